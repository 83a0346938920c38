// The live debugger: follows /console/live/stream (Server-Sent Events) and lists what arrives,
// newest first. Text is always set with textContent, never parsed as HTML: events are untrusted.
"use strict";

(function () {
  const MAX_ROWS = 500; // as Segment's debugger: the newest 500 stay on the page
  const root = document.getElementById("debugger");
  if (!root) return;
  const list = document.getElementById("events");
  const status = document.getElementById("status");
  const pause = document.getElementById("pause");
  const detail = document.getElementById("detail");
  const pretty = document.getElementById("pretty");
  const raw = document.getElementById("raw");
  const viewPretty = document.getElementById("view-pretty");
  const viewRaw = document.getElementById("view-raw");
  let source = null;
  let lastId = "";
  let shown = 0;
  let selected = null;
  let reconnecting = 0;
  let leftOut = 0;
  let samplingEnds = 0;
  const newest = { event: 0, reject: 0 };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(text, sampling) {
    status.textContent = text;
    status.dataset.sampling = sampling ? "true" : "false";
  }

  function call(item, body) {
    // A recreation of the call the SDK made (Segment's "Pretty" view).
    const who = {};
    if (body.userId) who.userId = body.userId;
    if (body.anonymousId) who.anonymousId = body.anonymousId;
    const args = [];
    if (item.type === "track") args.push(JSON.stringify(body.event), JSON.stringify(body.properties || {}, null, 2));
    else if (item.type === "page" || item.type === "screen") args.push(JSON.stringify(body.name || null), JSON.stringify(body.properties || {}, null, 2));
    else if (item.type === "identify") args.push(JSON.stringify(body.userId || null), JSON.stringify(body.traits || {}, null, 2));
    else if (item.type === "group") args.push(JSON.stringify(body.groupId), JSON.stringify(body.traits || {}, null, 2));
    else if (item.type === "alias") args.push(JSON.stringify(body.userId), JSON.stringify(body.previousId));
    if (item.type !== "identify" && item.type !== "alias") args.push(JSON.stringify(who));
    return "analytics." + item.type + "(" + args.join(", ") + ")";
  }

  function facts(pairs) {
    const dl = el("dl", "facts");
    for (const [name, value] of pairs) {
      dl.append(el("dt", "", name), el("dd", "", value === null || value === undefined || value === "" ? "–" : value));
    }
    return dl;
  }

  function open(item, button) {
    if (selected) selected.removeAttribute("aria-current");
    selected = button;
    button.setAttribute("aria-current", "true");
    pretty.replaceChildren();
    if (item.kind === "reject") {
      pretty.append(
        el("h2", "", "Rejected: " + item.code),
        el("p", "", item.message),
        facts([
          ["Source", item.source], ["Route", item.route], ["Item in batch", item.index],
          ["Received", new Date(item.received_at_ms).toISOString()], ["Reject seq", item.seq],
        ]),
      );
      raw.textContent = item.raw;
    } else {
      let body = {};
      try { body = JSON.parse(item.raw); } catch (e) { body = {}; }
      pretty.append(
        el("h2", "", item.type + (item.event ? ": " + item.event : "")),
        el("pre", "call", call(item, body)),
        el("h3", "", "The request it came in"),
        facts([
          ["Route", item.route], ["Format", item.format], ["Source", item.source], ["IP", item.ip || "(not recorded: context.ip is set for client-side routes, as Segment does)"],
          ["User agent", item.user_agent || "(the SDK sent none)"], ["Library", item.library],
          ["Received", item.received_at], ["messageId", item.message_id], ["Log seq", item.seq],
        ]),
      );
      raw.textContent = JSON.stringify(body, null, 2);
    }
    detail.hidden = false;
  }

  function row(item) {
    const li = el("li", item.kind);
    const button = el("button");
    button.type = "button";
    if (item.kind === "reject") {
      button.append(el("span", "kind", "rejected"), el("span", "", item.code + ": " + item.message));
      button.append(el("span", "meta", item.source + " · " + item.route));
    } else {
      button.append(el("span", "kind", item.type), el("span", "", item.event || item.user_id || item.anonymous_id || item.message_id));
      button.append(el("span", "meta", item.source + " · " + item.format + " · " + (item.user_id || item.anonymous_id || "") + " · " + item.received_at));
    }
    button.addEventListener("click", () => open(item, button));
    li.dataset.kind = item.kind;
    li.append(button);
    return li;
  }

  function add(items) {
    for (const item of items) {
      // A stream resumed without a cursor starts a backlog back: what is shown already is skipped.
      if (item.seq <= newest[item.kind]) continue;
      newest[item.kind] = item.seq;
      list.prepend(row(item));
      shown += 1;
    }
    while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
  }

  function connect() {
    const url = root.dataset.stream + (lastId ? "&resume=" + encodeURIComponent(lastId) : "");
    source = new EventSource(url);
    source.addEventListener("open", () => {
      clearTimeout(reconnecting);
      if (/^(Connecting|Reconnecting)/.test(status.textContent)) setStatus("Live: " + shown + " shown", false);
    });
    source.addEventListener("batch", (message) => {
      lastId = message.lastEventId || lastId;
      const data = JSON.parse(message.data);
      // Oldest first within a batch, each prepended: newest ends on top. Rejects interleave by time.
      const items = data.rejects.concat(data.events);
      items.sort((a, b) => time(a) - time(b));
      add(items);
      const s = data.status;
      if (s.sampling) {
        // Said until 5 s pass without sampling, so it can be read.
        leftOut += s.left_out;
        clearTimeout(samplingEnds);
        samplingEnds = setTimeout(() => { leftOut = 0; setStatus("Live: " + shown + " shown", false); }, 5000);
      }
      if (leftOut) setStatus("Live, sampling: " + leftOut.toLocaleString("en") + " events left out (too many to show them all); " + shown + " shown", true);
      else setStatus("Live: " + shown + " shown", false);
    });
    source.addEventListener("problem", (message) => {
      setStatus(JSON.parse(message.data).message, true);
      source.close();
    });
    source.addEventListener("error", () => {
      // Each stream ends after a few seconds and reconnects at once (docs/console.md): say so
      // only when the reconnection takes a while.
      if (source.readyState === EventSource.CLOSED) setStatus("Disconnected; reload the page to reconnect.", true);
      else {
        clearTimeout(reconnecting);
        reconnecting = setTimeout(() => setStatus("Reconnecting…", false), 2000);
      }
    });
  }

  function time(item) {
    return item.kind === "reject" ? item.received_at_ms : Date.parse(item.received_at) || 0;
  }

  pause.addEventListener("click", () => {
    const paused = pause.getAttribute("aria-pressed") === "true";
    if (paused) {
      pause.setAttribute("aria-pressed", "false");
      pause.textContent = "Pause";
      connect(); // resumes after the last event shown: what came meanwhile follows
    } else {
      source.close();
      pause.setAttribute("aria-pressed", "true");
      pause.textContent = "Resume";
      setStatus("Paused: " + shown + " shown", false);
    }
  });

  function view(rawView) {
    viewPretty.setAttribute("aria-pressed", rawView ? "false" : "true");
    viewRaw.setAttribute("aria-pressed", rawView ? "true" : "false");
    pretty.hidden = rawView;
    raw.hidden = !rawView;
  }
  viewPretty.addEventListener("click", () => view(false));
  viewRaw.addEventListener("click", () => view(true));

  connect();
})();
