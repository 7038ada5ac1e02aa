// vqa-monitor status page: fetches /api/streams[/NAME] and renders with textContent only (no HTML strings).
"use strict";
(function () {
  const body = document.body;
  const main = document.getElementById("main");
  const OVERVIEW_REFRESH_MS = 2000;
  const STREAM_REFRESH_MS = 5000;
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }
  const enc = encodeURIComponent;
  function ago(seconds) {
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 129600) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }
  function when(t) { return new Date(t * 1000).toLocaleString(); }
  function fmt(aqs) { return aqs === null || aqs === undefined ? "–" : aqs.toFixed(2); }
  function sinceIncident(incident) {
    if (!incident) return "no incident";
    if (!incident.ended) return incident.kind + " since " + ago(Date.now() / 1000 - incident.started);
    return "last incident " + ago(Date.now() / 1000 - incident.ended);
  }
  async function getJSON(url) {
    const response = await fetch(url, {cache: "no-store", credentials: "same-origin"});
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }
  function stamp(error) {
    const updated = document.getElementById("updated");
    updated.textContent = error ? "update failed: " + error.message : "updated " + new Date().toLocaleTimeString();
    updated.className = error ? "stale" : "";
  }

  // overview --------------------------------------------------------------------------------------
  function tile(stream, pictures, tick) {
    const a = el("a", {class: "tile state-" + stream.state, href: "/streams/" + enc(stream.name),
                       "data-stream": stream.name, "data-state": stream.state});
    if (pictures && stream.has_live_picture) {
      a.appendChild(el("img", {class: "thumb", alt: "live picture of " + stream.name,
                               src: "/snapshots/" + enc(stream.name) + "/live.jpg?t=" + tick}));
    } else {
      a.appendChild(el("div", {class: "thumb none"}, stream.up ? "no picture yet" : "no picture"));
    }
    a.appendChild(el("div", {class: "name"}, stream.name));
    const facts = el("div", {class: "facts"});
    facts.appendChild(el("span", {class: "badge"}, stream.state));
    facts.appendChild(el("span", {class: "aqs"}, "AQS " + fmt(stream.aqs)));
    facts.appendChild(el("span", {}, stream.up ? "up" : "down" + (stream.down_reason ? " (" + stream.down_reason + ")" : "")));
    facts.appendChild(el("span", {}, "quality " + stream.quality_state));
    if (stream.dominant_artifact) facts.appendChild(el("span", {}, "artifact " + stream.dominant_artifact));
    facts.appendChild(el("span", {class: "since"}, sinceIncident(stream.last_incident)));
    a.appendChild(facts);
    return a;
  }
  async function overview() {
    try {
      const data = await getJSON("/api/streams");
      const grid = el("div", {class: "grid", id: "tiles"});
      const tick = Date.now();
      for (const stream of data.streams) grid.appendChild(tile(stream, data.pictures, tick));
      if (!data.streams.length) grid.appendChild(el("p", {class: "empty"}, "no streams configured"));
      main.replaceChildren(grid);
      stamp(null);
    } catch (error) { stamp(error); }
    setTimeout(overview, OVERVIEW_REFRESH_MS);
  }

  // one stream ------------------------------------------------------------------------------------
  function chart(history, bands, colours) {
    const W = 900, H = 220, now = Date.now() / 1000, from = now - 3600;
    const x = (t) => ((t - from) / 3600) * W, y = (v) => H - v * H;
    const root = svg("svg", {viewBox: "0 0 " + W + " " + (H + 20), class: "chart", role: "img",
                             "aria-label": "AQS over the last hour"});
    let upper = 1;
    for (const [bound, name] of bands) {
      root.appendChild(svg("rect", {x: 0, y: y(upper), width: W, height: (upper - bound) * H, class: "band band-" + name}));
      const label = svg("text", {x: 4, y: y(upper) + 12, class: "bandlabel"});
      label.textContent = name;
      root.appendChild(label);
      upper = bound;
    }
    const points = history.filter((p) => p[0] >= from && p[1] !== null);
    if (points.length) {
      root.appendChild(svg("polyline", {points: points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "),
                                        class: "line"}));
      for (const p of points) {  // the leading artifact of each point as a coloured tick under the chart
        const lead = p[2] && p[2][0];
        if (lead) root.appendChild(svg("rect", {x: x(p[0]), y: H + 4, width: 2, height: 12, fill: colours[lead[0]] || "#888"}));
      }
    }
    return root;
  }
  function legend(colours) {
    const box = el("div", {class: "legend"});
    for (const [name, colour] of Object.entries(colours)) {
      const item = el("span", {class: "key"});
      item.appendChild(el("i"));
      item.firstChild.style.background = colour;  // CSSOM, allowed by the CSP (no inline style attribute)
      item.appendChild(document.createTextNode(name));
      box.appendChild(item);
    }
    return box;
  }
  function incidentRow(stream, incident, pictures) {
    const item = el("li", {class: "incident kind-" + incident.kind, "data-incident": incident.id});
    const head = incident.kind + (incident.kind === "quality" ? " (" + incident.level + ")" : "") + ", " +
      when(incident.started) + (incident.ended ? " – " + when(incident.ended) : " – ongoing");
    item.appendChild(el("div", {class: "head"}, head));
    if (incident.worst_aqs !== undefined && incident.worst_aqs !== null) {
      item.appendChild(el("div", {}, "worst AQS " + fmt(incident.worst_aqs) + ", " + (incident.dominant_artifact || "")));
    }
    if (pictures && incident.has_picture) {
      const figures = el("div", {class: "pictures"});
      const base = "/snapshots/" + enc(stream) + "/" + incident.id;
      figures.appendChild(el("img", {class: "snapshot", src: base + ".jpg", alt: "worst window of " + incident.id}));
      if (incident.has_heatmap) {
        figures.appendChild(el("img", {class: "heatmap", src: base + ".heat.jpg", alt: "artifact heatmap of " + incident.id}));
      }
      item.appendChild(figures);
    }
    return item;
  }
  async function streamPage() {
    const name = body.dataset.stream;
    try {
      const data = await getJSON("/api/streams/" + enc(name));
      const parts = [];
      const facts = el("p", {class: "facts state-" + data.state, id: "summary"});
      facts.textContent = data.state + " · AQS " + fmt(data.aqs) + " · quality " + data.quality_state +
        (data.dominant_artifact ? " · " + data.dominant_artifact : "") + " · " + (data.up ? "up" : "down");
      parts.push(facts);
      if (data.pictures && data.has_live_picture) {
        parts.push(el("img", {class: "live", alt: "live picture", src: "/snapshots/" + enc(name) + "/live.jpg?t=" + Date.now()}));
      }
      parts.push(el("h2", {}, "AQS, last hour"));
      parts.push(chart(data.history, data.bands, data.artifact_colours));
      parts.push(legend(data.artifact_colours));
      if (data.last_score) {
        const top = Object.entries(data.last_score.artifacts).sort((a, b) => b[1] - a[1]).slice(0, 3);
        parts.push(el("p", {}, "leading artifacts now: " + top.map(([k, v]) => k + " " + (v * 100).toFixed(0) + "%").join(", ")));
      }
      parts.push(el("h2", {}, "Incidents"));
      const list = el("ul", {class: "incidents", id: "incidents"});
      for (const incident of data.incidents) list.appendChild(incidentRow(name, incident, data.pictures));
      if (!data.incidents.length) list.appendChild(el("li", {class: "empty"}, "none"));
      parts.push(list);
      parts.push(el("h2", {}, "Signal checks"));
      const signals = el("ul", {class: "signals"});
      for (const change of data.signal_history) {
        signals.appendChild(el("li", {}, when(change.time) + ": " + change.check + (change.active ? " on" : " off") +
                                         (change.reason ? " (" + change.reason + ")" : "")));
      }
      if (!data.signal_history.length) signals.appendChild(el("li", {class: "empty"}, "no changes"));
      parts.push(signals);
      main.replaceChildren(...parts);
      stamp(null);
    } catch (error) { stamp(error); }
    setTimeout(streamPage, STREAM_REFRESH_MS);
  }

  if (body.dataset.page === "overview") overview(); else streamPage();
})();
