// room-display web page: fills the page from the node's Server-Sent Events (/events).
// Every text goes in through textContent, never innerHTML: room names are data, not markup.
"use strict";

(function () {
  const page = document.body.dataset.page;
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  let doc = null;       // the status document (/api/status)
  let words = {};       // the page's words in the node's language
  let source = null;
  let lastMessage = 0;
  let lostSince = null;
  let renderQueued = false;

  function withToken(url) {
    if (!token) return url;
    return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function w(key) { return words[key] || key; }
  function hhmm(iso) { return iso ? iso.slice(11, 16) : ""; }
  function span(b) { return b ? hhmm(b.start) + "–" + hhmm(b.end) : ""; }
  function when(iso) {
    // HH:MM today, the date too when it is another day than the document's.
    if (!iso) return w("unknown");
    const today = doc && doc.generated_at ? doc.generated_at.slice(0, 10) : "";
    return iso.slice(0, 10) === today ? hhmm(iso) : iso.slice(0, 10) + " " + hhmm(iso);
  }
  function roomUrl(room) { return withToken("/rooms/" + encodeURIComponent(room.open_id)); }

  // -- problems ------------------------------------------------------------------------------

  function roomProblems(room) {
    const out = [];
    if (!room.state) out.push(w("unknown"));
    if (room.stale) out.push(w("stale") + " — " + w("as_of") + " " + when(room.as_of));
    for (const d of room.devices || []) {
      if (!d.online) out.push(d.id + " " + w("offline") + (d.error ? ": " + d.error : ""));
    }
    return out;
  }

  function fleet() {
    const nodes = [];
    if (!doc) return nodes;
    const self = doc.node;
    nodes.push({name: self.name, role: self.role, online: true, version: self.version,
                clock_synced: self.clock_synced, last_seen: doc.generated_at, self: true});
    const others = self.fleet || {};
    for (const name of Object.keys(others).sort()) {
      if (name === self.name) continue;
      nodes.push(Object.assign({name: name}, others[name]));
    }
    return nodes;
  }

  function allDevices() {
    const out = [];
    if (!doc) return out;
    for (const room of doc.rooms) {
      for (const d of room.devices || []) out.push(Object.assign({room: room.name, node: doc.node.name}, d));
    }
    const others = doc.node.fleet || {};
    for (const name of Object.keys(others).sort()) {
      if (name === doc.node.name) continue;
      for (const d of others[name].devices || []) {
        out.push(Object.assign({node: name, online: false}, d,
                               others[name].online ? {} : {online: false, error: w("offline") + " (" + name + ")"}));
      }
    }
    return out;
  }

  function nodeProblems() {
    const out = [];
    if (!doc) return out;
    const links = doc.node.links || {};
    for (const name of Object.keys(links)) {
      if (!links[name].up) out.push(name + " " + w("down") + (links[name].error ? ": " + links[name].error : ""));
    }
    for (const n of fleet()) {
      if (!n.online) out.push(n.name + " " + w("offline") + " — " + w("last_seen") + " " + when(n.last_seen));
      else if (n.clock_synced === false) out.push(n.name + ": " + w("clock_unsynced"));
    }
    const resync = doc.node.resync;
    if (resync && resync.enabled && resync.ok === false) {
      out.push(w("resync") + ": " + (resync.error || w("error")));
    }
    return out;
  }

  // -- tiles ---------------------------------------------------------------------------------

  function tile(room) {
    const li = el("li", "tile state-" + (room.state || "unknown") + (room.stale ? " stale" : ""));
    li.dataset.id = room.open_id;
    li.dataset.state = room.state || "unknown";
    const name = page === "overview" ? el("a", "name", room.name) : el("span", "name", room.name);
    if (page === "overview") name.href = roomUrl(room);
    li.appendChild(name);
    li.appendChild(el("span", "state", room.state ? w(room.state) : w("unknown")));
    const until = freeAt(room) || room.until;
    if (until) li.appendChild(el("span", "until", w("until") + " " + when(until)));
    if (room.current) li.appendChild(el("span", "current", w("now") + " " + span(room.current)));
    if (room.next && room.next.length) li.appendChild(el("span", "next", w("next") + " " + span(room.next[0])));
    if (room.stale) li.appendChild(el("span", "stale-note", "⚠ " + w("stale") + " — " + w("as_of") + " " + when(room.as_of)));
    if (page === "overview") {
      const offline = (room.devices || []).filter(function (d) { return !d.online; }).length;
      if (offline) li.appendChild(el("span", "devices-bad", w("devices") + " " + w("offline") + ": " + offline));
    }
    return li;
  }

  // While a room is in use, "until" means when it is free again, as the door sign says: the end
  // of the block of back-to-back and overlapping bookings, not the end of the status's state
  // (busy turns "ending soon" before the meeting ends).
  function freeAt(room) {
    if (!room.current || (room.state !== "busy" && room.state !== "ending")) return null;
    let end = room.current.end;
    const later = (room.next || []).slice().sort(function (a, b) { return a.start < b.start ? -1 : 1; });
    for (const b of later) {
      if (Date.parse(b.start) <= Date.parse(end) && Date.parse(b.end) > Date.parse(end)) end = b.end;
    }
    return end;
  }

  function sortedRooms() {
    const rooms = doc.rooms.slice();
    if (page === "overview") {
      // Problems first, then by name; the lobby board keeps the configured order.
      rooms.sort(function (a, b) {
        const pa = roomProblems(a).length ? 0 : 1, pb = roomProblems(b).length ? 0 : 1;
        return pa - pb || a.name.localeCompare(b.name);
      });
    }
    if (page === "room") {
      return rooms.filter(function (r) { return r.open_id === roomId(); });
    }
    return rooms;
  }

  function renderRooms() {
    const list = document.getElementById("rooms");
    const frag = document.createDocumentFragment();
    for (const room of sortedRooms()) frag.appendChild(tile(room));
    list.replaceChildren(frag);
  }

  function renderProblems() {
    const box = document.getElementById("problems");
    if (!box) return;
    const items = nodeProblems();
    for (const room of doc.rooms) {
      for (const p of roomProblems(room)) items.push(room.name + ": " + p);
    }
    box.hidden = items.length === 0;
    const ul = el("ul");
    for (const p of items.slice(0, 50)) ul.appendChild(el("li", "", p));
    if (items.length > 50) ul.appendChild(el("li", "", "+" + (items.length - 50)));
    box.replaceChildren(el("h2", "", "⚠ " + w("problems") + " (" + items.length + ")"), ul);
  }

  function renderNodes() {
    const ul = document.getElementById("nodes");
    if (!ul) return;
    const frag = document.createDocumentFragment();
    const nodes = fleet().sort(function (a, b) { return (a.online ? 1 : 0) - (b.online ? 1 : 0); });
    for (const n of nodes) {
      const li = el("li", n.online ? "ok" : "bad");
      li.appendChild(el("strong", "", n.name));
      li.appendChild(el("span", "", (n.role || "") + " · " + (n.online ? w("online") : w("offline"))));
      li.appendChild(el("span", "", w("version") + " " + (n.version || "?")));
      li.appendChild(el("span", "", n.clock_synced === false ? w("clock_unsynced") : w("clock_synced")));
      li.appendChild(el("span", "", w("last_seen") + " " + when(n.last_seen)));
      if (n.self) {
        const links = doc.node.links || {};
        for (const name of Object.keys(links)) {
          const label = name === "feishu" ? w("link") : name === "broker" ? w("broker") : name;
          li.appendChild(el("span", links[name].up ? "" : "bad",
                            label + ": " + (links[name].up ? w("up") : w("down")) + " " + w("since") + " " + when(links[name].since)));
        }
        const resync = doc.node.resync;
        if (resync && resync.enabled) {
          li.appendChild(el("span", resync.ok === false ? "bad" : "",
                            w("resync") + ": " + (resync.at ? when(resync.at) + " " + (resync.ok ? "ok" : (resync.error || w("error"))) : w("none"))));
        }
      }
      replicationSpans(li, n);
      frag.appendChild(li);
    }
    ul.replaceChildren(frag);
  }

  function replicationSpans(li, n) {
    // Several bridges: which one publishes the rooms, and how far behind each peer is here.
    const rep = doc.node.replication;
    if (!rep || !rep.peers || !Object.keys(rep.peers).length) return;
    if (rep.publisher === n.name) li.appendChild(el("span", "publisher", "★ " + w("publisher")));
    const peer = rep.peers[n.name];
    if (peer) {
      li.appendChild(el("span", peer.behind ? "bad behind" : "behind",
                        w("behind") + ": " + peer.behind + " (" + peer.applied + "/" + peer.published + ")"));
    }
  }

  function deviceItem(d) {
    const li = el("li", d.online ? "ok" : "bad");
    li.appendChild(el("strong", "", d.id));
    li.appendChild(el("span", "", (d.kind || "") + (d.room ? " · " + d.room : "") + (d.node ? " · " + d.node : "")));
    li.appendChild(el("span", "", d.online ? w("online") : w("offline")));
    li.appendChild(el("span", "", w("last_update") + " " + when(d.last_update)));
    if (d.error) li.appendChild(el("span", "bad", w("error") + ": " + d.error));
    return li;
  }

  function renderDevices() {
    const ul = document.getElementById("devices");
    if (!ul || page !== "overview") return;
    const frag = document.createDocumentFragment();
    const devices = allDevices().sort(function (a, b) { return (a.online ? 1 : 0) - (b.online ? 1 : 0); });
    for (const d of devices) frag.appendChild(deviceItem(d));
    ul.replaceChildren(frag);
  }

  function renderAll() {
    renderQueued = false;
    if (!doc) return;
    for (const node of document.querySelectorAll("[data-label]")) node.textContent = w(node.dataset.label);
    const name = document.getElementById("node-name");
    if (name) name.textContent = "· " + doc.node.name;
    renderRooms();
    renderProblems();
    renderNodes();
    renderDevices();
    if (page === "room") loadRoom();
    if (!performance.getEntriesByName("first-render").length) performance.mark("first-render");
  }

  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(renderAll);
  }

  // -- one room ------------------------------------------------------------------------------

  function roomId() { return decodeURIComponent(location.pathname.split("/")[2] || ""); }

  function minutes(iso) { return parseInt(iso.slice(11, 13), 10) * 60 + parseInt(iso.slice(14, 16), 10); }

  function loadRoom() {
    const id = roomId();
    fetch(withToken("/api/rooms/" + encodeURIComponent(id)), {cache: "no-store"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (detail) { if (detail) renderRoom(detail); })
      .catch(function () { /* the connection banner says why */ });
    const img = document.getElementById("sign");
    img.alt = w("sign");
    img.src = withToken("/rooms/" + encodeURIComponent(id) + "/sign.png?t=" + Date.now());
  }

  function renderRoom(detail) {
    document.title = detail.room.name + " · room-display";
    const day = detail.now.slice(0, 10);
    let lo = 7 * 60, hi = 21 * 60;
    const blocks = detail.today.map(function (b) {
      const s = b.start.slice(0, 10) < day ? 0 : minutes(b.start);
      const e = b.end.slice(0, 10) > day ? 24 * 60 : minutes(b.end);
      lo = Math.min(lo, Math.floor(s / 60) * 60);
      hi = Math.max(hi, Math.ceil(e / 60) * 60);
      return {s: s, e: e, b: b};
    });
    const line = document.getElementById("timeline");
    const frag = document.createDocumentFragment();
    for (let h = lo; h <= hi; h += 60) {
      const tick = el("span", "tick", String(h / 60).padStart(2, "0"));
      tick.style.left = ((h - lo) / (hi - lo) * 100) + "%";
      frag.appendChild(tick);
    }
    for (const x of blocks) {
      const block = el("span", "block", span(x.b));
      block.style.left = ((x.s - lo) / (hi - lo) * 100) + "%";
      block.style.width = ((x.e - x.s) / (hi - lo) * 100) + "%";
      frag.appendChild(block);
    }
    const nowMark = el("span", "now");
    nowMark.style.left = ((minutes(detail.now) - lo) / (hi - lo) * 100) + "%";
    frag.appendChild(nowMark);
    line.replaceChildren(frag);
    const list = document.getElementById("today");
    const items = document.createDocumentFragment();
    for (const b of detail.today) items.appendChild(el("li", "", span(b)));
    if (!detail.today.length) items.appendChild(el("li", "", w("no_bookings")));
    list.replaceChildren(items);
    const devices = document.getElementById("devices");
    const dfrag = document.createDocumentFragment();
    for (const d of detail.room.devices) dfrag.appendChild(deviceItem(d));
    devices.replaceChildren(dfrag);
  }

  // -- live ----------------------------------------------------------------------------------

  function setConnection(live) {
    const conn = document.getElementById("conn");
    if (live) {
      lostSince = null;
      document.body.classList.remove("lost");
      conn.className = "conn live";
      conn.textContent = "● " + w("live");
    } else {
      if (lostSince === null) lostSince = new Date();
      document.body.classList.add("lost");
      conn.className = "conn lost";
      conn.textContent = "⚠ " + w("lost") + " " + w("since") + " " +
        lostSince.toTimeString().slice(0, 8) + " — " + w("reconnecting") + "…";
    }
  }

  function onRoom(room) {
    if (!doc) return;
    const i = doc.rooms.findIndex(function (r) { return r.open_id === room.open_id; });
    if (i < 0) return;
    const before = roomProblems(doc.rooms[i]).length > 0;
    doc.rooms[i] = room;
    const old = document.querySelector('#rooms > li[data-id="' + CSS.escape(room.open_id) + '"]');
    if (old) old.replaceWith(tile(room));
    if (before !== (roomProblems(room).length > 0) || page === "room") queueRender();
    else if (page === "overview") { renderProblems(); renderDevices(); }
  }

  function connect() {
    if (source) source.close();
    source = new EventSource(withToken("/events"));
    source.addEventListener("snapshot", function (e) {
      const data = JSON.parse(e.data);
      doc = data.status;
      words = data.labels || {};
      document.documentElement.lang = data.language === "zh" ? "zh" : "en";
      setConnection(true);
      renderAll();
    });
    source.addEventListener("room", function (e) { onRoom(JSON.parse(e.data)); });
    source.addEventListener("node", function (e) {
      if (!doc) return;
      doc.node = JSON.parse(e.data);
      queueRender();
    });
    source.onmessage = function () {};
    source.onopen = function () { lastMessage = Date.now(); };
    source.onerror = function () {
      setConnection(false);
      // A network error keeps reconnecting by itself; an error answer closes the source for good.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
    };
    for (const name of ["snapshot", "room", "node", "ping"]) {
      source.addEventListener(name, function () { lastMessage = Date.now(); });
    }
  }

  // The node sends a ping every 5 s: silence for 15 s means it is gone even if TCP did not say so.
  function everySecond() {
    if (lastMessage && Date.now() - lastMessage > 15000) {
      setConnection(false);
      lastMessage = Date.now();
      connect();
    }
    const clock = document.getElementById("clock");
    if (clock) clock.textContent = new Date().toTimeString().slice(0, 5);
  }
  setInterval(everySecond, 1000);
  everySecond();

  connect();
})();
