"""The web console in a real browser (Debian's chromium via playwright) against a real `geomill serve`: log in,
submit a job and watch it complete, retry a failed task, CSRF refusals, a read-only key, the map's pixels."""

from __future__ import annotations

import io
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import rasterio

from browser_helpers import EXAMPLES, Server, login, shoot

pytestmark = pytest.mark.timeout(300)


def _status_of(page: Any) -> str:
    return str(page.locator("#job-status").get_attribute("data-status") or "")


def _wait_status(page: Any, statuses: tuple[str, ...], timeout_ms: int = 60_000) -> str:
    page.wait_for_function("(wanted) => wanted.includes(document.querySelector('#job-status').dataset.status)",
                           arg=list(statuses), timeout=timeout_ms)
    return _status_of(page)


def test_login_sets_an_httponly_strict_cookie_and_a_wrong_key_is_refused(browser: Any, server: Server) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/ui/health")
    assert "/ui/login" in page.url
    shoot(page, "login")
    page.fill("#key", "gm_nothing_wrong-key")
    page.click("#login-form button[type=submit]")
    assert "unknown or revoked" in page.locator("#login-error").inner_text()
    page.fill("#key", server.keys["read"])
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{server.url}/ui/health")
    cookie = next(c for c in context.cookies() if c["name"] == "geomill_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # http: not Secure
    page.wait_for_selector("#components tr[data-component=database]")
    assert page.locator("#components tr[data-component=database] .status").inner_text() == "ok"
    page.wait_for_selector("#workers tbody tr")
    assert "console-test" in page.locator("#workers tbody").inner_text()  # this server's worker pool, seen
    assert page.locator("#queues tr[data-queue=default-tasks]").count() == 1
    shoot(page, "health")
    context.close()


def test_a_login_post_without_its_form_token_is_403(browser: Any, server: Server) -> None:
    context = browser.new_context()
    r = context.request.post(f"{server.url}/ui/login", form={"key": server.keys["admin"], "next": "/ui"},
                             max_redirects=0)
    assert r.status == 403
    assert not [c for c in context.cookies() if c["name"] == "geomill_session"]
    context.close()


def test_state_changing_calls_with_the_cookie_need_the_csrf_token(browser: Any, server: Server) -> None:
    page = login(browser, server, "submit")
    token = page.locator("meta[name=geomill-csrf]").get_attribute("content")
    url = f"{server.url}/api/jobs/submit/fanout"
    body = {"n": 1, "tag": "csrf"}
    assert page.request.post(url, data=body).status == 403  # the cookie alone
    assert page.request.post(url, data=body, headers={"X-CSRF-Token": "0" * 64}).status == 403
    assert page.request.post(url, data=body, headers={"X-CSRF-Token": token}).status in (200, 202)
    assert page.request.get(f"{server.url}/api/jobs").status == 200  # reads need no token
    page.context.close()


def test_submit_a_job_from_the_console_and_watch_it_complete(browser: Any, server: Server) -> None:
    page = login(browser, server, "submit", "/ui/submit")
    page.select_option("#job-type", "fanout")
    page.fill("#param-fields input[name=n]", "4")
    page.fill("#param-fields input[name=stages]", "2")
    page.fill("#param-fields input[name=sleep_s]", "0.3")
    page.fill("#param-fields input[name=tag]", "console-submit")
    shoot(page, "submit")
    page.click("#submit-job")
    page.click("#submitted-link")
    page.wait_for_selector("#stages tbody tr")
    assert _wait_status(page, ("completed", "completed_with_errors", "failed")) == "completed"
    page.wait_for_function("document.querySelectorAll('#tasks tbody tr').length === 8")
    assert page.locator("#stages tbody tr[data-stage='2'] td").nth(4).inner_text() == "4"  # 4 completed
    assert page.locator("#gantt svg rect").count() >= 2
    assert page.locator("#correlation-id").inner_text()
    page.locator("#tasks tbody tr button.detail").first.click()
    page.wait_for_selector("#task-detail:not([hidden])")
    facts = page.locator("#task-facts").inner_text()
    assert "default-tasks" in facts and "console-test" in facts  # queue and worker (executed_by_app)
    shoot(page, "job")
    page.goto(f"{server.url}/ui/jobs")
    page.wait_for_selector("#jobs-table tbody tr")
    assert page.locator("#jobs-table tbody tr[data-status=completed]").count() >= 1
    page.context.close()


def test_retry_a_failed_task_from_the_job_page(browser: Any, server: Server) -> None:
    # every attempt up to the task type's 3 fails; the 4th, the manual retry, succeeds
    job_id = server.submit("fanout", {"n": 1, "fail_attempts": 3, "tag": "console-retry"})
    assert server.wait_finished(job_id)["status"] == "failed"
    page = login(browser, server, "submit", f"/ui/jobs/{job_id}")
    page.wait_for_selector("#tasks tbody tr[data-status=failed] button.retry")
    page.locator("#tasks tbody tr[data-status=failed] button.detail").click()
    page.wait_for_selector("#task-detail:not([hidden])")
    assert "planned transient failure on attempt 3" in page.locator("#task-error").inner_text()
    page.locator("#tasks tbody tr[data-status=failed] button.retry").click()
    assert _wait_status(page, ("completed",)) == "completed"
    task = page.locator("#tasks tbody tr").first
    assert task.get_attribute("data-status") == "completed"
    assert task.locator("td").nth(4).inner_text().startswith("4/")  # the manual retry was the 4th attempt
    page.context.close()


def test_bulk_rerun_by_error_prefix_and_retry_all_failed(browser: Any, server: Server) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=2)).replace(microsecond=0)
    transient = [server.submit("fanout", {"n": 1, "fail_attempts": 3, "tag": f"bulk-{i}"}) for i in range(2)]
    refused = server.submit("fanout", {"n": 1, "invalid_keys": [0], "tag": "bulk-refused"})
    for job_id in (*transient, refused):
        assert server.wait_finished(job_id)["status"] == "failed"
    with server.client("read") as c:
        summaries = {j: c.get(f"/api/jobs/{j}/tasks").json()["items"][0]["error_summary"] for j in (*transient, refused)}
    prefix = summaries[transient[0]].split(":", 1)[0]  # the error's type: TransientError
    assert not summaries[refused].startswith(prefix), summaries

    page = login(browser, server, "submit")
    local = since.strftime("%Y-%m-%dT%H:%M:%S")  # the browser runs in UTC (see login)
    page.select_option("#filters select[name=status]", "failed")
    page.fill("#filters input[name=error]", prefix)
    page.fill("#filters input[name=created_after]", local)
    page.click("#filters button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#jobs-table tbody tr').length === 2")
    shown = {r.get_attribute("data-job-id") for r in page.locator("#jobs-table tbody tr").all()}
    assert shown == set(transient)
    page.fill("#rerun-form input[name=error_prefix]", prefix)
    page.fill("#rerun-form input[name=created_after]", local)
    shoot(page, "jobs")
    page.click("#rerun-dry")  # a dry run, then the confirmation (accepted), then the rerun
    page.wait_for_function("document.querySelector('#rerun-out').dataset.retried || document.querySelector('#flash.error')")
    assert page.locator("#rerun-out").get_attribute("data-retried"), (page.locator("#rerun-out").inner_text(), page.locator("#flash").inner_text())
    assert page.locator("#rerun-out").get_attribute("data-retried") == "2"
    for job_id in transient:
        assert server.wait_finished(job_id)["status"] == "completed"  # the 4th attempt succeeds
    assert server.job(refused)["status"] == "failed"  # another error: not rerun

    page.goto(f"{server.url}/ui/jobs/{refused}")
    page.wait_for_selector("#retry-failed:not([disabled])")
    page.click("#retry-failed")
    page.wait_for_selector("#flash.ok")
    assert "queued again: 1" in page.locator("#flash").inner_text()
    page.context.close()


def test_a_read_only_key_sees_no_actions_and_is_refused_by_the_server(browser: Any, server: Server) -> None:
    job_id = server.submit("fanout", {"n": 1, "invalid_keys": [0], "tolerate": True, "tag": "console-read"})
    server.wait_finished(job_id)
    page = login(browser, server, "read", f"/ui/jobs/{job_id}")
    page.wait_for_selector("#tasks tbody tr[data-status=failed]")
    assert page.locator("#job-actions").count() == 0
    assert page.locator("button.retry").count() == 0
    page.goto(f"{server.url}/ui/jobs")
    page.wait_for_selector("#jobs-table tbody tr")
    assert page.locator("#bulk-rerun").count() == 0
    page.goto(f"{server.url}/ui/submit")
    assert page.locator("#submit-form").count() == 0
    token = page.locator("meta[name=geomill-csrf]").get_attribute("content")
    r = page.request.post(f"{server.url}/api/jobs/{job_id}/resubmit", headers={"X-CSRF-Token": token})
    assert r.status == 403  # a valid session and token, but the key can only read
    page.context.close()


def _drawn_pixels(png: bytes, background: tuple[int, int, int]) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a screenshot has no CRS
        with rasterio.MemoryFile(io.BytesIO(png).read()) as mem, mem.open() as ds:
            rgb = ds.read(indexes=[1, 2, 3]).astype(int)
    differs = np.abs(rgb - np.array(background).reshape(3, 1, 1)).sum(axis=0) > 30
    return int(differs.sum())


def test_the_map_draws_a_rasters_outputs(browser: Any, server: Server) -> None:
    job_id = server.submit("process_raster", {"source": str(EXAMPLES / "RGB.byte.tif")})
    job = server.wait_finished(job_id)
    assert job["status"] == "completed", job
    page = login(browser, server, "read", f"/ui/jobs/{job_id}")
    tile_requests: list[str] = []
    page.on("request", lambda r: tile_requests.append(r.url) if "/tiles/" in r.url else None)
    page.wait_for_selector("#map[data-rendered=true]")
    assert page.locator("#layers li[data-kind=footprints]").count() == 1
    assert page.locator("#layers li[data-kind=cog]").count() == 1
    cog = quote(job["result"]["outputs"][0]["cog_uri"], safe="")
    # the COG layer asks the tile endpoints for its tiles (their pixels: once /tiles is mounted, see docs/console.md)
    assert any("/tiles/cog/tiles/WebMercatorQuad/" in u and f"url={cog}" in u for u in tile_requests), tile_requests
    page.add_style_tag(content=".ol-control, .ol-attribution { display: none !important; }")
    page.wait_for_timeout(300)  # one frame for the style
    drawn = _drawn_pixels(page.locator("#map").screenshot(), background=(255, 255, 255))
    box = page.locator("#map").bounding_box()
    assert drawn > 0.05 * box["width"] * box["height"], drawn  # the footprint fills a good part of the fitted view
    page.goto(f"{server.url}/ui/map?job={job_id}")
    page.wait_for_selector("#map[data-rendered=true]")
    shoot(page, "map")
    page.context.close()



def test_the_map_draws_a_cogs_tiles(browser: Any, server: Server) -> None:
    """The COG layer alone (footprints hidden): its tiles from /tiles/cog draw pixels. Needs the tiles branch."""
    job_id = server.submit("process_raster", {"source": str(EXAMPLES / "RGB.byte.tif")})
    assert server.wait_finished(job_id)["status"] == "completed"
    page = login(browser, server, "read")
    with page.expect_response(lambda r: "/tiles/cog/tiles/" in r.url, timeout=30_000) as first_tile:
        page.goto(f"{server.url}/ui/map?job={job_id}")
    assert first_tile.value.status == 200, first_tile.value.url
    page.wait_for_selector("#map[data-rendered=true]")  # OpenLayers' rendercomplete: every tile loaded
    page.locator("#layers li[data-kind=footprints] input").uncheck()
    page.add_style_tag(content=".ol-control, .ol-attribution { display: none !important; }")
    page.wait_for_timeout(500)  # a frame without the footprints
    drawn = _drawn_pixels(page.locator("#map").screenshot(), background=(255, 255, 255))
    box = page.locator("#map").bounding_box()
    assert drawn > 0.05 * box["width"] * box["height"], drawn  # the raster's own pixels
    page.context.close()
