/* Outputs on a map (OpenLayers, vendored: no CDN). No basemap: a blank canvas with the outputs drawn on it.
   Layer kinds: cog / mosaic (raster tiles from /tiles), vector (PostGIS vector tiles), features (GeoPackage as
   GeoJSON), footprints (the STAC footprints: the outputs' bounding boxes). */
"use strict";
const GMMap = (() => {
  const tiles = (path) => `${GM.root}/tiles${path}`;
  const FOOTPRINT = new ol.style.Style({
    stroke: new ol.style.Stroke({ color: "#d35400", width: 2 }),
    fill: new ol.style.Fill({ color: "rgba(211, 84, 0, 0.15)" }),  // light: the raster under it stays readable
  });
  const VECTOR = new ol.style.Style({
    stroke: new ol.style.Stroke({ color: "#1f5fa8", width: 1.5 }),
    fill: new ol.style.Fill({ color: "rgba(31, 95, 168, 0.3)" }),
    image: new ol.style.Circle({ radius: 4, fill: new ol.style.Fill({ color: "#1f5fa8" }) }),
  });

  function footprint(bbox, props) {
    const extent = ol.proj.transformExtent(bbox, "EPSG:4326", "EPSG:3857");
    return new ol.Feature({ geometry: ol.geom.Polygon.fromExtent(extent), ...props });
  }

  /* What a finished job produced, as map layers (read from its result document). */
  function layersOfJob(job) {
    const r = job.result || {};
    const layers = [];
    const boxes = [];
    for (const o of r.outputs || []) {
      if (o.cog_uri) layers.push({ kind: "cog", url: o.cog_uri, bbox: o.bbox });
      if (o.bbox) boxes.push({ bbox: o.bbox, name: o.stac_item_uri || o.cog_uri });
    }
    const tiled = r.tiled || {};
    if (tiled.mosaic && (tiled.mosaic.mosaic_uri || tiled.mosaic.uri)) {
      layers.push({ kind: "mosaic", url: tiled.mosaic.mosaic_uri || tiled.mosaic.uri, bbox: tiled.mosaic.bbox });
    }
    if (tiled.collection && tiled.collection.bbox) boxes.push({ bbox: tiled.collection.bbox, name: "collection" });
    for (const t of r.tables || []) {
      if (t.backend === "postgis") layers.push({ kind: "vector", table: `${t.schema_name}.${t.table}`, bbox: t.bbox_wgs84 });
      else layers.push({ kind: "features", url: t.location, layer: t.table, bbox: t.bbox_wgs84 });
      if (t.bbox_wgs84) boxes.push({ bbox: t.bbox_wgs84, name: t.item_id });
    }
    if (boxes.length) layers.push({ kind: "footprints", boxes });
    return layers;
  }

  function olLayer(spec) {
    if (spec.kind === "cog" || spec.kind === "mosaic") {
      const path = spec.kind === "cog" ? "/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png" : "/mosaic/tiles/WebMercatorQuad/{z}/{x}/{y}.png";
      return new ol.layer.Tile({ source: new ol.source.XYZ({ url: `${tiles(path)}?url=${encodeURIComponent(spec.url)}`, crossOrigin: null }) });
    }
    if (spec.kind === "vector") {
      return new ol.layer.VectorTile({ style: VECTOR, source: new ol.source.VectorTile({
        format: new ol.format.MVT(), url: tiles(`/vector/${encodeURIComponent(spec.table)}/{z}/{x}/{y}.pbf`) }) });
    }
    if (spec.kind === "features") {
      return new ol.layer.Vector({ style: VECTOR, source: new ol.source.Vector({ format: new ol.format.GeoJSON(),
        url: `${tiles("/features")}${GM.query({ url: spec.url, layer: spec.layer })}` }) });
    }
    if (spec.kind === "footprints") {
      return new ol.layer.Vector({ style: FOOTPRINT, source: new ol.source.Vector({
        features: spec.boxes.map((b) => footprint(b.bbox, { name: b.name })) }) });
    }
    return null;  // an unknown kind: listed, not drawn
  }

  function describe(spec) {
    if (spec.kind === "footprints") return `STAC footprints (${spec.boxes.length})`;
    if (spec.kind === "vector") return `vector tiles: ${spec.table}`;
    if (spec.kind === "features") return `GeoJSON: ${spec.url} ${spec.layer || ""}`;
    return `${spec.kind} tiles: ${spec.url}`;
  }

  /* Draw `specs` into `target` (replacing an earlier map there) and list them in `legend`. */
  function show(target, legend, specs) {
    if (target._gmMap) target._gmMap.setTarget(null);
    target.replaceChildren();
    target.hidden = !specs.length;
    if (!specs.length) { legend.replaceChildren(GM.el("li", { text: "no mappable outputs" })); return null; }
    const layers = specs.map(olLayer);
    /* One line per layer, with a checkbox that shows or hides it. */
    legend.replaceChildren(...specs.map((s, i) => GM.el("li", { "data-kind": s.kind }, GM.el("label", {},
      GM.el("input", { type: "checkbox", checked: true, onchange: (ev) => layers[i] && layers[i].setVisible(ev.target.checked) }),
      ` ${describe(s)}`))));
    const map = new ol.Map({ target, layers: layers.filter(Boolean), view: new ol.View({ center: [0, 0], zoom: 1 }) });
    target._gmMap = map;
    const boxes = specs.flatMap((s) => (s.boxes ? s.boxes.map((b) => b.bbox) : s.bbox ? [s.bbox] : []));
    if (boxes.length) {
      const all = boxes.reduce((a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])]);
      map.getView().fit(ol.proj.transformExtent(all, "EPSG:4326", "EPSG:3857"), { padding: [30, 30, 30, 30], maxZoom: 18 });
    }
    map.once("rendercomplete", () => { target.dataset.rendered = "true"; });
    return map;
  }

  return { show, layersOfJob };
})();
