// room-display web page: fills the page from the node's Server-Sent Events (/events).
// Every text goes in through textContent, never innerHTML: room names are data, not markup.
// Every time shown is the node's: times in the status document carry the node's offsets, and
// the clock is formatted in the node's zone (sent with the snapshot), not the browser's.
"use strict";

(function () {
  const page = document.body.dataset.page;
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  // The board: ?floor=3F,4F and ?rooms=omm_a,omm_b pick rooms; ?page_seconds=N pages faster.
  const floorFilter = listParam("floor");
  const roomFilter = listParam("rooms");
  const pageSeconds = Math.max(1, Number(params.get("page_seconds")) || 10);
  let doc = null;       // the status document (/api/status)
  let words = {};       // the page's words in the node's language
  let zone = null;      // the node's IANA zone
  let skew = 0;         // node clock - browser clock, ms (the board's clock is the node's)
  let source = null;
  let lastMessage = 0;
  let lostSince = null;
  let renderQueued = false;
  let roomIndex = new Map();  // open_id -> its place in doc.rooms: a live update finds it at once
  let sideTimer = null;       // problems, nodes and devices: redrawn at most every SIDE_MS
  const SIDE_MS = 200;
  let boardPage = 0;
  let boardPages = 1;
  let boardTimer = null;

  function listParam(name) {
    const raw = params.get(name);
    if (!raw) return null;
    const items = raw.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
    return items.length ? items : null;
  }

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

  function w(key, values) {
    if (values && values.n === 1 && words[key + "_one"]) key += "_one";
    let text = words[key] || key;
    for (const k of Object.keys(values || {})) text = text.split("{" + k + "}").join(String(values[k]));
    return text;
  }
  function str(v) { return typeof v === "string" ? v : ""; }
  function hhmm(iso) { return typeof iso === "string" ? iso.slice(11, 16) : ""; }
  // "Title · Organizer" of a booking; "Booked" when private or its title is not known yet;
  // "" when the node shows no details (the default).
  function about(b) {
    if (!b || typeof b !== "object" || !("title" in b || "organizer" in b || b.private)) return "";
    const title = b.private ? w("booked") : (str(b.title) || w("booked"));
    return str(b.organizer) && !b.private ? title + " · " + str(b.organizer) : title;
  }
  function span(b) { return b ? hhmm(b.start) + "–" + hhmm(b.end) : ""; }
  function when(iso) {
    // HH:MM today, the date too when it is another day than the document's.
    if (typeof iso !== "string" || !iso) return w("unknown");
    const today = doc && typeof doc.generated_at === "string" ? doc.generated_at.slice(0, 10) : "";
    return iso.slice(0, 10) === today ? hhmm(iso) : iso.slice(0, 10) + " " + hhmm(iso);
  }
  function roomUrl(room) { return withToken("/rooms/" + encodeURIComponent(room.open_id)); }

  // -- order and groups: one order on every page ----------------------------------------------

  const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});

  // The floor or building a room is on, from its name's first word ("3F 大会议室" -> "3F"):
  // a short word with a digit in it. Rooms without one are grouped last.
  function floorOf(room) {
    const first = str(room.name).trim().split(/[\s·\-_/]+/)[0] || "";
    return /\d/.test(first) && first.length <= 6 ? first : "";
  }

  function byFloorThenName(a, b) {
    const fa = floorOf(a), fb = floorOf(b);
    if (fa !== fb) return fa === "" ? 1 : fb === "" ? -1 : collator.compare(fa, fb);
    return collator.compare(str(a.name), str(b.name)) || collator.compare(a.open_id, b.open_id);
  }

  // -- shapes: every state has its own, so colour is never the only cue ------------------------

  const SVG = "http://www.w3.org/2000/svg";
  const SHAPES = {
    // free: a ring with a tick; soon: a clock; busy: a no-entry disc; ending: an hourglass.
    free: [["circle", {cx: 12, cy: 12, r: 10, fill: "none", "stroke-width": 2.5}],
           ["path", {d: "M7 12.5l3.2 3.2L17 9", fill: "none", "stroke-width": 2.8}]],
    soon: [["circle", {cx: 12, cy: 12, r: 10, fill: "none", "stroke-width": 2.5}],
           ["path", {d: "M12 6v6l4 2.5", fill: "none", "stroke-width": 2.5}]],
    busy: [["circle", {cx: 12, cy: 12, r: 11, "stroke-width": 0}],
           ["rect", {x: 5.5, y: 10, width: 13, height: 4, "class": "cut", "stroke-width": 0}]],
    ending: [["path", {d: "M6 3h12M6 21h12M7 3c0 6 10 6 10 9s-10 3-10 9M17 3c0 6-10 6-10 9s10 3 10 9",
                       fill: "none", "stroke-width": 2.2}]],
    unknown: [["circle", {cx: 12, cy: 12, r: 10, fill: "none", "stroke-width": 2.5,
                          "stroke-dasharray": "4 3"}]],
  };

  function icon(state) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "icon icon-" + state);
    svg.setAttribute("aria-hidden", "true");
    for (const [tag, attrs] of SHAPES[state] || SHAPES.unknown) {
      const part = document.createElementNS(SVG, tag);
      for (const k of Object.keys(attrs)) part.setAttribute(k, String(attrs[k]));
      svg.appendChild(part);
    }
    return svg;
  }

  // -- problems, grouped by cause ----------------------------------------------------------------

  function roomProblems(room) {
    const out = [];
    if (!room.state) out.push(w("unknown"));
    if (room.stale) out.push(w("stale") + " — " + w("as_of") + " " + when(room.as_of));
    for (const d of room.devices || []) {
      if (d && !d.online) out.push(str(d.id) + " " + w("offline") + (d.error ? ": " + d.error : ""));
    }
    return out;
  }

  function otherNodes() {
    // Other nodes of the site, as sent; an entry that is not an object is shown as unknown.
    const out = [];
    const others = doc && doc.node && doc.node.fleet && typeof doc.node.fleet === "object" ? doc.node.fleet : {};
    for (const name of Object.keys(others).sort(collator.compare)) {
      if (name === doc.node.name) continue;
      const n = others[name];
      out.push(n && typeof n === "object" && !Array.isArray(n) ? Object.assign({}, n, {name: name})
                                                                : {name: name, online: false, malformed: true});
    }
    return out;
  }

  function fleet() {
    if (!doc) return [];
    const self = doc.node;
    return [{name: self.name, role: self.role, online: true, version: self.version,
             clock_synced: self.clock_synced, last_seen: doc.generated_at, self: true}].concat(otherNodes());
  }

  function allDevices() {
    const out = [];
    if (!doc) return out;
    for (const room of doc.rooms) {
      for (const d of room.devices || []) {
        if (d && typeof d === "object") out.push(Object.assign({room: room.name, node: doc.node.name}, d));
      }
    }
    // Other Pis name a device's room by its id: show the room's name where this node knows it.
    const names = {};
    for (const room of doc.rooms) names[room.open_id] = room.name;
    for (const n of otherNodes()) {
      for (const d of Array.isArray(n.devices) ? n.devices : []) {
        if (!d || typeof d !== "object") continue;
        const room = typeof d.room === "string" && names[d.room] ? {room: names[d.room]} : {};
        out.push(Object.assign({node: n.name, online: false}, d, room,
                               n.online ? {} : {online: false, error: w("offline") + " (" + n.name + ")"}));
      }
    }
    return out;
  }

  // One entry per cause: {title, items}. A link down explains the rooms it left stale.
  function problemGroups() {
    const groups = [];
    if (!doc) return groups;
    const links = doc.node.links && typeof doc.node.links === "object" ? doc.node.links : {};
    const stale = doc.rooms.filter(function (r) { return r.stale && r.state; });
    let staleTold = false;
    for (const name of Object.keys(links)) {
      const link = links[name] || {};
      if (link.up) continue;
      const label = name === "feishu" ? w("link") : name === "broker" ? w("broker") : name;
      let title = w("link_down", {link: label, t: when(link.since)});
      if (link.error) title += " (" + link.error + ")";
      const explains = stale.length > 0 && !staleTold;
      if (explains) title += ": " + w("rooms_stale", {n: stale.length});
      staleTold = staleTold || explains;
      groups.push({title: title, items: explains ? stale.map(staleLine) : []});
    }
    if (stale.length && !staleTold) {
      groups.push({title: w("rooms_stale", {n: stale.length}), items: stale.map(staleLine)});
    }
    const unknown = doc.rooms.filter(function (r) { return !r.state; });
    if (unknown.length) {
      groups.push({title: w("rooms_unknown", {n: unknown.length}),
                   items: unknown.map(function (r) { return r.name; })});
    }
    const offline = allDevices().filter(function (d) { return !d.online; });
    if (offline.length) {
      groups.push({title: w("devices_offline", {n: offline.length}), items: offline.map(function (d) {
        return str(d.id) + (d.room ? " · " + d.room : "") + (d.error ? ": " + d.error : "");
      })});
    }
    const down = fleet().filter(function (n) { return !n.online; });
    if (down.length) {
      groups.push({title: w("nodes_offline", {n: down.length}), items: down.map(function (n) {
        return n.name + " — " + w("last_seen") + " " + when(n.last_seen);
      })});
    }
    for (const n of fleet()) {
      if (n.online && n.clock_synced === false) groups.push({title: n.name + ": " + w("clock_unsynced"), items: []});
    }
    const resync = doc.node.resync;
    if (resync && resync.enabled && resync.ok === false) {
      groups.push({title: w("resync") + ": " + (resync.error || w("error")), items: []});
    }
    return groups;
  }

  function staleLine(room) { return room.name + ": " + w("stale") + " — " + w("as_of") + " " + when(room.as_of); }

  // -- tiles ---------------------------------------------------------------------------------

  function untilText(room) {
    // The node says it, by the one rule every surface follows (display/headline.py).
    return str(room.until_text);
  }

  function tile(room) {
    const state = room.state || "unknown";
    const li = el("li", "tile state-" + state + (room.stale ? " stale" : "") +
                  (room.closed ? " closed" : ""));
    li.dataset.id = room.open_id;
    li.dataset.state = state;
    // Under its floor's heading the board drops the floor from the name ("3F Focus" -> "Focus").
    const floor = page === "board" ? floorOf(room) : "";
    const shown = floor && str(room.name).length > floor.length ? str(room.name).slice(floor.length).replace(/^[\s·\-_/]+/, "") : room.name;
    const name = page === "overview" ? el("a", "name", shown) : el("span", "name", shown);
    name.title = room.name;
    if (page === "overview") name.href = roomUrl(room);
    li.appendChild(name);
    const head = el("span", "state");
    head.appendChild(icon(state));
    // "即将开始 · Starting soon": a narrow tile may break between the languages, never inside one.
    const word = el("span", "word");
    const parts = (room.state ? w(room.state) : w("unknown")).split(" · ");
    parts.forEach(function (part, i) {
      word.appendChild(el("span", "part", part + (i < parts.length - 1 ? " ·" : "")));
      if (i < parts.length - 1) word.appendChild(document.createTextNode(" "));
    });
    head.appendChild(word);
    li.appendChild(head);
    const until = untilText(room);
    if (until) li.appendChild(el("span", "until", until));
    if (page !== "board") {
      if (room.current) li.appendChild(el("span", "current", w("now") + " " + span(room.current)));
      if (room.next && room.next.length) li.appendChild(el("span", "next", w("next") + " " + span(room.next[0])));
    }
    const who = about(room.current);  // title and organizer, only where [details] allows them
    if (who) li.appendChild(el("span", "about", who));
    if (room.checkin && typeof room.checkin === "object") li.appendChild(checkinLine(room));
    if (room.stale) li.appendChild(el("span", "stale-note", "⚠ " + w("stale") + " — " + w("as_of") + " " + when(room.as_of)));
    if (room.closed) li.appendChild(el("span", "closed-note", "☾ " + w("closed") + (room.opens_at ? " — " + w("until") + " " + when(room.opens_at) : "")));
    if (page === "overview") {
      const offline = (room.devices || []).filter(function (d) { return d && !d.online; }).length;
      if (offline) li.appendChild(el("span", "devices-bad", w("devices") + " " + w("offline") + ": " + offline));
    }
    return li;
  }

  // Check-in: the state on every tile; on a room's page opened with the token, two buttons.
  function checkinLine(room) {
    const c = room.checkin;
    const line = el("span", "checkin checkin-" + str(c.state), w("checkin_" + str(c.state)) +
      (c.release_at ? " · " + w("released_at") + " " + when(c.release_at) : ""));
    if (page === "room" && token) {
      for (const [action, label] of [["in", "check_in"], ["end", "end_meeting"]]) {
        const button = el("button", "checkin-" + action, w(label));
        button.addEventListener("click", function () {
          fetch("/api/rooms/" + encodeURIComponent(room.open_id) + "/checkin", {
            method: "POST", headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
            body: JSON.stringify({action: action}),
          }).then(function (r) { return r.json(); })
            .then(function (answer) { button.title = answer.message; })
            .catch(function () { /* the connection banner says why */ });
        });
        line.appendChild(button);
      }
    }
    return line;
  }

  function shownRooms() {
    let rooms = doc.rooms.slice();
    if (page === "room") return rooms.filter(function (r) { return r.open_id === roomId(); });
    if (page === "board") {
      if (floorFilter) rooms = rooms.filter(function (r) { return floorFilter.includes(floorOf(r)); });
      if (roomFilter) rooms = rooms.filter(function (r) { return roomFilter.includes(r.open_id); });
    }
    return rooms.sort(byFloorThenName);
  }

  // Rooms with their floor headings, in order: [{head: "3F"} | {room: room}, ...].
  function withHeadings(rooms) {
    const out = [];
    let floor = null;
    const grouped = rooms.some(function (r) { return floorOf(r) !== ""; });
    for (const room of rooms) {
      const f = floorOf(room);
      if (grouped && f !== floor) {
        out.push({head: f || w("other")});
        floor = f;
      }
      out.push({room: room});
    }
    return out;
  }

  function headItem(text) {
    const li = el("li", "floor", text);
    li.setAttribute("role", "heading");
    li.setAttribute("aria-level", "3");
    return li;
  }

  function renderRooms() {
    if (page === "board") { renderBoard(); return; }
    const list = document.getElementById("rooms");
    const frag = document.createDocumentFragment();
    const items = page === "overview" ? withHeadings(shownRooms()) : shownRooms().map(function (r) { return {room: r}; });
    for (const item of items) frag.appendChild(item.room ? tile(item.room) : headItem(item.head));
    list.replaceChildren(frag);
  }

  // -- the board: every room on one screen, or pages of them ------------------------------------

  const BOARD = {minRow: 44, maxRow: 120, minColWidth: 360};

  // The items laid into columns of ``rows`` slots, top to bottom: a heading never ends a
  // column, and a floor that goes on in the next column gets its heading again there.
  function columnize(items, rows) {
    const out = [];
    let floor = null;
    for (const item of items) {
      if (item.head !== undefined) floor = item.head;
      const slot = out.length % rows;
      if (item.head !== undefined && slot === rows - 1) out.push({spacer: true});
      else if (item.room && slot === 0 && floor !== null && out.length) out.push({head: floor});
      out.push(item);
    }
    return out;
  }

  // Columns and row height for the items in w x h px: the largest type that fits, or null.
  function fit(items, width, height) {
    let best = null;
    const maxCols = Math.max(1, Math.floor(width / BOARD.minColWidth));
    for (let cols = 1; cols <= maxCols; cols++) {
      let rows = Math.ceil(items.length / cols);
      while (Math.ceil(columnize(items, rows).length / rows) > cols) rows++;
      const row = Math.min(BOARD.maxRow, Math.floor(height / rows));
      if (row < BOARD.minRow) continue;
      const colWidth = width / cols;
      const size = Math.min(row * 0.45, colWidth / 16);  // a row holds name, state and until
      if (!best || size > best.size + 0.5) best = {cols: cols, rows: rows, row: row, size: size};
    }
    return best;
  }

  function renderBoard() {
    const list = document.getElementById("rooms");
    const main = list.parentElement;
    const rooms = shownRooms();
    // The header first: its height decides the room left for the rows.
    const free = rooms.filter(function (r) { return r.state === "free"; }).length;
    const count = document.getElementById("free-count");
    count.replaceChildren(icon("free"), el("span", "", w("free") + " " + free + "/" + rooms.length));
    everySecond();
    const width = main.clientWidth;
    const height = window.innerHeight - main.getBoundingClientRect().top - 12;
    const all = withHeadings(rooms);
    let pages = [all];
    let layout = fit(all, width, height);
    if (!layout) {
      // Too many for one screen: pages of the most rows and columns the smallest type allows.
      const cols = Math.max(1, Math.floor(width / BOARD.minColWidth));
      const rows = Math.max(1, Math.floor(height / BOARD.minRow));
      const perPage = Math.max(2, cols * rows);
      pages = [];
      let start = 0;
      while (start < rooms.length) {
        // Each page repeats its floor headings; shrink the slice until it fits with them.
        let count = Math.min(perPage, rooms.length - start);
        while (count > 1 && columnize(withHeadings(rooms.slice(start, start + count)), rows).length > perPage) count--;
        pages.push(withHeadings(rooms.slice(start, start + count)));
        start += count;
      }
      layout = {cols: cols, rows: rows, row: BOARD.minRow, size: BOARD.minRow * 0.45};
    }
    boardPages = pages.length;
    if (boardPage >= boardPages) boardPage = 0;
    const rows = layout.rows;
    const items = columnize(pages[boardPage], rows);
    const gap = Math.max(3, Math.round(layout.row * 0.1));  // n rows and n-1 gaps fit the height
    list.style.gridTemplateColumns = "repeat(" + layout.cols + ", minmax(0, 1fr))";
    list.style.gridTemplateRows = "repeat(" + rows + ", " + (layout.row - gap) + "px)";
    list.style.rowGap = gap + "px";
    list.style.fontSize = Math.round(layout.size) + "px";
    const frag = document.createDocumentFragment();
    for (const item of items) {
      frag.appendChild(item.room ? tile(item.room) : item.spacer ? el("li", "spacer") : headItem(item.head));
    }
    list.replaceChildren(frag);
    shrinkToFit(list, layout.size);
    const pager = document.getElementById("pager");
    pager.hidden = boardPages < 2;
    pager.textContent = w("page") + " " + (boardPage + 1) + "/" + boardPages;
    if (!boardTimer) {
      boardTimer = setInterval(function () {
        if (boardPages < 2) return;
        boardPage = (boardPage + 1) % boardPages;
        renderBoard();
      }, pageSeconds * 1000);
    }
  }

  // Smaller type until every row shows its state and "until" whole and a readable part of the
  // name (long words in zh+en, e.g. "即将开始 · Starting soon", never wrap or spill over).
  function shrinkToFit(list, size) {
    let px = size;
    for (let i = 0; i < 12 && px > Math.max(12, size * 0.7); i++) {
      const tight = Array.prototype.some.call(list.children, function (li) {
        if (li.scrollWidth > li.clientWidth + 1) return true;
        const name = li.querySelector(".name");
        // A name cut short to a few letters (a long name in a wide row may end in "…").
        return name !== null && name.scrollWidth > name.clientWidth + 1 && name.clientWidth < px * 8;
      });
      if (!tight) return;
      px = px * 0.9;
      list.style.fontSize = Math.round(px) + "px";
    }
  }

  // -- overview sections -------------------------------------------------------------------------

  function renderProblems() {
    const box = document.getElementById("problems");
    if (!box) return;
    const groups = problemGroups();
    box.hidden = groups.length === 0;
    const ul = el("ul");
    for (const g of groups) {
      const li = el("li", "", null);
      if (g.items.length) {
        const details = el("details");
        details.appendChild(el("summary", "", g.title));
        const inner = el("ul");
        for (const item of g.items.slice(0, 100)) inner.appendChild(el("li", "", item));
        if (g.items.length > 100) inner.appendChild(el("li", "", "+" + (g.items.length - 100)));
        details.appendChild(inner);
        li.appendChild(details);
      } else {
        li.textContent = g.title;
      }
      ul.appendChild(li);
    }
    box.replaceChildren(el("h2", "", "⚠ " + w("problems") + " (" + groups.length + ")"), ul);
  }

  function nodeItem(n) {
    const li = el("li", n.online ? "ok" : "bad");
    li.appendChild(el("strong", "", n.name));
    li.appendChild(el("span", "", str(n.role) + " · " + (n.online ? w("online") : w("offline"))));
    li.appendChild(el("span", "", w("version") + " " + (str(n.version) || "?")));
    li.appendChild(el("span", "", n.clock_synced === false ? w("clock_unsynced") : w("clock_synced")));
    li.appendChild(el("span", "", w("last_seen") + " " + when(n.last_seen)));
    if (n.self) {
      const links = doc.node.links && typeof doc.node.links === "object" ? doc.node.links : {};
      for (const name of Object.keys(links)) {
        const link = links[name] || {};
        const label = name === "feishu" ? w("link") : name === "broker" ? w("broker") : name;
        li.appendChild(el("span", link.up ? "" : "bad",
                          label + ": " + (link.up ? w("up") : w("down")) + " " + w("since") + " " + when(link.since)));
      }
      const resync = doc.node.resync;
      if (resync && resync.enabled) {
        li.appendChild(el("span", resync.ok === false ? "bad" : "",
                          w("resync") + ": " + (resync.at ? when(resync.at) + " " + (resync.ok ? "ok" : (resync.error || w("error"))) : w("none"))));
      }
    }
    replicationSpans(li, n);
    return li;
  }

  function renderNodes() {
    const ul = document.getElementById("nodes");
    if (!ul) return;
    const frag = document.createDocumentFragment();
    const nodes = fleet().sort(function (a, b) { return (a.online ? 1 : 0) - (b.online ? 1 : 0); });
    for (const n of nodes) {
      try {
        frag.appendChild(nodeItem(n));
      } catch (err) {  // whatever another node reported, the rest of the page is drawn
        frag.appendChild(el("li", "bad", str(n.name) + ": " + w("unknown")));
      }
    }
    ul.replaceChildren(frag);
  }

  function replicationSpans(li, n) {
    // Several bridges: which one publishes the rooms, and how far behind each peer is here.
    const rep = doc.node.replication;
    if (!rep || typeof rep !== "object" || !rep.peers || typeof rep.peers !== "object" ||
        !Object.keys(rep.peers).length) return;
    if (rep.publisher === n.name) li.appendChild(el("span", "publisher", "★ " + w("publisher")));
    const peer = rep.peers[n.name];
    if (peer) {
      li.appendChild(el("span", peer.behind ? "bad behind" : "behind",
                        w("behind") + ": " + peer.behind + " (" + peer.applied + "/" + peer.published + ")"));
    }
  }

  function deviceItem(d) {
    const li = el("li", d.online ? "ok" : "bad");
    li.appendChild(el("strong", "", str(d.id)));
    li.appendChild(el("span", "", str(d.kind) + (d.room ? " · " + d.room : "") + (d.node ? " · " + d.node : "")));
    li.appendChild(el("span", "", d.online ? w("online") : w("offline")));
    li.appendChild(el("span", "", w("last_update") + " " + when(d.last_update)));
    if (d.error) li.appendChild(el("span", "bad", w("error") + ": " + d.error));
    return li;
  }

  // The devices: a count, and only the unhealthy ones by name.
  function renderDevices() {
    const ul = document.getElementById("devices");
    if (!ul || page !== "overview") return;
    const devices = allDevices();
    const bad = devices.filter(function (d) { return !d.online; });
    const summary = document.getElementById("devices-summary");
    if (summary) {
      summary.textContent = bad.length ? w("devices_summary", {n: devices.length, bad: bad.length})
                                       : w("devices_all_ok", {n: devices.length});
      summary.className = bad.length ? "summary bad" : "summary";
    }
    const frag = document.createDocumentFragment();
    for (const d of bad) frag.appendChild(deviceItem(d));
    ul.replaceChildren(frag);
  }

  function renderAll() {
    renderQueued = false;
    if (!doc) return;
    for (const node of document.querySelectorAll("[data-label]")) node.textContent = w(node.dataset.label);
    const name = document.getElementById("node-name");
    if (name) name.textContent = "· " + doc.node.name;
    // Past a few hundred tiles the browser skips laying out and painting those off screen.
    document.body.classList.toggle("many", doc.rooms.length > 500);
    renderRooms();
    renderProblems();
    renderNodes();
    renderDevices();
    if (page === "room") loadRoom();
    if (!performance.getEntriesByName("first-render").length) performance.mark("first-render");
  }

  // The overview's side sections read every room: after a room or node message they are drawn
  // once for a burst of messages, not once per message (20,000 rooms).
  function queueSide() {
    if (sideTimer !== null) return;
    sideTimer = setTimeout(function () {
      sideTimer = null;
      if (!doc) return;
      renderProblems();
      renderNodes();
      renderDevices();
    }, SIDE_MS);
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
    const now = Date.parse(detail.now);
    let lo = 7 * 60, hi = 21 * 60;
    const blocks = detail.today.map(function (b) {
      const s = b.start.slice(0, 10) < day ? 0 : minutes(b.start);
      const e = b.end.slice(0, 10) > day ? 24 * 60 : minutes(b.end);
      lo = Math.min(lo, Math.floor(s / 60) * 60);
      hi = Math.max(hi, Math.ceil(e / 60) * 60);
      return {s: s, e: e, b: b, past: Date.parse(b.end) <= now};
    });
    const line = document.getElementById("timeline");
    const frag = document.createDocumentFragment();
    // Hour labels as often as they fit (a phone gets every 3rd), none cut at the edges.
    const px = line.clientWidth || 600;
    const hours = (hi - lo) / 60;
    const step = [1, 2, 3, 4, 6].find(function (s) { return px / hours * s >= 34; }) || 6;
    for (let h = lo; h <= hi; h += 60) {
      const labelled = ((h - lo) / 60) % step === 0;
      const tick = el("span", labelled ? "tick" : "tick minor", labelled ? String(h / 60).padStart(2, "0") : "");
      const at = (h - lo) / (hi - lo);
      tick.style.left = (at * 100) + "%";
      if (at === 0) tick.classList.add("first");
      if (at === 1) tick.classList.add("last");
      frag.appendChild(tick);
    }
    for (const x of blocks) {
      const block = el("span", x.past ? "block past" : "block");
      const wide = (x.e - x.s) / (hi - lo) * px >= 90;
      if (wide) block.textContent = span(x.b);
      block.title = span(x.b);
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
    for (const b of detail.today) {
      const past = Date.parse(b.end) <= now;
      const li = el("li", past ? "booking past" : "booking");
      li.appendChild(el("span", "when", span(b)));
      if (past) li.appendChild(el("span", "past-word", w("past")));
      items.appendChild(li);
    }
    if (!detail.today.length) items.appendChild(el("li", "booking", w("no_bookings")));
    list.replaceChildren(items);
    const devices = document.getElementById("devices");
    const dfrag = document.createDocumentFragment();
    for (const d of detail.room.devices || []) if (d && typeof d === "object") dfrag.appendChild(deviceItem(d));
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
      if (lostSince === null) lostSince = Date.now();
      document.body.classList.add("lost");
      conn.className = "conn lost";
      conn.textContent = "⚠ " + w("lost") + " " + w("since") + " " +
        nodeTime(lostSince, true) + " — " + w("reconnecting") + "…";
    }
  }

  function onRoom(room) {
    if (!doc) return;
    const i = roomIndex.get(room.open_id);
    if (i === undefined || !doc.rooms[i] || doc.rooms[i].open_id !== room.open_id) return;
    const before = roomProblems(doc.rooms[i]).length > 0;
    doc.rooms[i] = room;
    if (page === "board") { queueRender(); return; }
    const old = document.querySelector('#rooms > li[data-id="' + CSS.escape(room.open_id) + '"]');
    if (old) old.replaceWith(tile(room));
    if (before !== (roomProblems(room).length > 0) || page === "room") queueRender();
    else if (page === "overview") queueSide();
  }

  function connect() {
    if (source) source.close();
    source = new EventSource(withToken("/events"));
    source.addEventListener("snapshot", function (e) {
      const data = JSON.parse(e.data);
      doc = data.status;
      roomIndex = new Map(doc.rooms.map(function (r, i) { return [r.open_id, i]; }));
      words = data.labels || {};
      zone = data.timezone || null;
      const at = Date.parse(doc.generated_at);
      if (!isNaN(at)) skew = at - Date.now();
      document.documentElement.lang = data.language === "zh" ? "zh" : "en";
      setConnection(true);
      renderAll();
      everySecond();
    });
    source.addEventListener("room", function (e) { onRoom(JSON.parse(e.data)); });
    source.addEventListener("node", function (e) {
      if (!doc) return;
      doc.node = JSON.parse(e.data);
      // The tiles do not show the node member: only the board (its clock, counts) and the
      // side sections do.
      if (page === "overview") queueSide(); else queueRender();
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

  // The node's wall clock: the browser's clock corrected by the node's, in the node's zone.
  function nodeTime(ms, seconds) {
    const options = {hour: "2-digit", minute: "2-digit", hourCycle: "h23"};
    if (seconds) options.second = "2-digit";
    if (zone) options.timeZone = zone;
    try {
      return new Intl.DateTimeFormat("en-GB", options).format(new Date(ms + skew));
    } catch (err) {  // a zone this browser does not know: its own, rather than nothing
      delete options.timeZone;
      return new Intl.DateTimeFormat("en-GB", options).format(new Date(ms + skew));
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
    if (clock && doc) clock.textContent = nodeTime(Date.now(), false);
  }
  setInterval(everySecond, 1000);

  let resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(queueRender, 100);
  });

  // Leaving the page closes its stream at once: a page kept for "back" must not hold one of
  // the browser's few connections to the node (a kiosk cycling pages would stall on the 7th).
  window.addEventListener("pagehide", function () {
    if (source) source.close();
    source = null;
  });
  window.addEventListener("pageshow", function (e) { if (e.persisted) connect(); });

  connect();
})();
