/* The map page: a job's outputs, or a COG / PostGIS table / GeoPackage layer given by hand. */
"use strict";
(() => {
  const form = document.getElementById("map-form");
  const target = document.getElementById("map");
  const legend = document.getElementById("layers");

  async function draw() {
    const f = GM.formValues(form);
    let specs = [];
    if (f.job) {
      try { specs = GMMap.layersOfJob(await GM.api("GET", `/api/jobs/${f.job}`)); } catch (e) { GM.flash(e.message, "error"); }
    }
    if (f.cog) specs.push({ kind: "cog", url: f.cog });
    if (f.table) specs.push({ kind: "vector", table: f.table });
    if (f.gpkg) specs.push({ kind: "features", url: f.gpkg, layer: f.layer });
    GMMap.show(target, legend, specs);
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams(GM.formValues(form));
    history.replaceState(null, "", `?${q}`);
    draw();
  });
  const given = new URLSearchParams(location.search);
  for (const [k, v] of given.entries()) if (form.elements[k]) form.elements[k].value = v;
  draw();
})();
