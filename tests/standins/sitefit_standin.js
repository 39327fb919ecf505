// A stand-in AppServer written in JavaScript (Node's standard library only): it speaks geomill's AppServer protocol
// for sitefit 1.0.0 without any geomill code, to prove that another server can take the AppServer's place.
// It answers one placement: the house unrotated, its bounding box centred on the parcel's (no setback handling).
// Usage: node sitefit_standin.js PORT
"use strict";
const http = require("http");

function bbox(ring) {
  const xs = ring.map((p) => p[0]), ys = ring.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

function solve(inputs) {
  const [px0, py0, px1, py1] = bbox(inputs.parcel.coordinates[0]);
  const [hx0, hy0, hx1, hy1] = bbox(inputs.house.coordinates[0]);
  const fits = hx1 - hx0 <= px1 - px0 && hy1 - hy0 <= py1 - py0;
  const x = (px0 + px1) / 2 - (hx0 + hx1) / 2, y = (py0 + py1) / 2 - (hy0 + hy1) / 2;
  return {
    placements: fits ? [{id: "js-1", score: 0.5,
                         transform: {rotation: {axis: "z", value: 0}, translation: {x: x, y: y, z: 0}}}] : [],
    reason: fits ? null : "the house's bounding box is larger than the parcel's",
    metadata: {definition: "sitefit", version: "1.0.0", engine: {mode: "appserver", name: "node-standin"}},
  };
}

function send(res, status, doc) {
  res.writeHead(status, {"content-type": "application/json"});
  res.end(JSON.stringify(doc));
}

http.createServer((req, res) => {
  if (req.method === "GET" && (req.url === "/health" || req.url === "/ready")) return send(res, 200, {status: "ok"});
  if (req.method === "GET" && req.url === "/contracts")
    return send(res, 200, [{definition: "sitefit", version: "1.0.0"}]);
  if (req.method !== "POST" || req.url !== "/gh/sitefit:1.0.0/solve")
    return send(res, 404, {title: "Unknown contract", status: 404, detail: req.url});
  let body = "";
  req.on("data", (chunk) => { body += chunk; });
  req.on("end", () => {
    try {
      send(res, 200, solve(JSON.parse(body).inputs));
    } catch (err) {
      send(res, 422, {title: "Invalid input", status: 422, detail: String(err)});
    }
  });
}).listen(Number(process.argv[2]), "127.0.0.1");
