// A slot's level over time as a small inline SVG: the levels this app has seen (kept in localStorage,
// one history per slot), the forecast down to the run-out date, and the orders, shipments, deliveries
// and cancellations it saw happen. Plain SVG: one line, a dashed forecast and a few markers need no
// charting library, and the figure's caption says the same in words for screen readers.
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 320;
const HEIGHT = 150;
const PAD = { left: 34, right: 8, top: 10, bottom: 22 };
const MAX_POINTS = 500;
const DAY = 86400000;
const OPEN = new Set(["REQUESTED", "PLACED"]);
const EVENT_LABELS = { ordered: "ordered", shipped: "shipped", delivered: "delivered", cancelled: "cancelled" };
const dateFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", timeZone: "UTC" });

const key = (serial, slotId) => `companion.history.${serial}.${slotId}`;

function load(serial, slotId) {
  try {
    return JSON.parse(localStorage.getItem(key(serial, slotId))) || { points: [], events: [] };
  } catch {
    return { points: [], events: [] };
  }
}

// Remember what the API says now: a level point when the device reported, an event when the order moved.
export function recordObservation(device, slot) {
  const history = load(device.serial, slot.slotId);
  const at = device.lastActiveAt;
  const last = history.points[history.points.length - 1];
  if (at && (!last || last.t !== at || last.v !== slot.remainingQuantity)) {
    history.points.push({ t: at, v: slot.remainingQuantity });
    history.points = history.points.slice(-MAX_POINTS);
  }
  const previous = history.orderState;
  const current = slot.order.state;
  const when = at || new Date().toISOString();
  if (previous !== undefined && previous !== current) {
    if (OPEN.has(current) && !OPEN.has(previous)) history.events.push({ t: when, kind: "ordered" });
    else if (current === "SHIPPED") history.events.push({ t: when, kind: "shipped" });
    else if (current === "CANCELLED") history.events.push({ t: when, kind: "cancelled" });
    else if (current === "NONE" && (OPEN.has(previous) || previous === "SHIPPED")) {
      history.events.push({ t: history.eta || when, kind: "delivered" });
    }
    history.events = history.events.slice(-MAX_POINTS);
  } else if (previous === undefined && current !== "NONE") {
    history.events.push({ t: when, kind: OPEN.has(current) ? "ordered" : current.toLowerCase() });
  }
  history.orderState = current;
  history.eta = slot.order.estimatedDeliveryDate || history.eta;
  localStorage.setItem(key(device.serial, slot.slotId), JSON.stringify(history));
}

export function forgetDevice(serial) {
  for (const name of Object.keys(localStorage)) {
    if (name.startsWith(`companion.history.${serial}.`)) localStorage.removeItem(name);
  }
}

function element(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [attribute, value] of Object.entries(attributes)) node.setAttribute(attribute, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderChart(figure, device, slot) {
  const history = load(device.serial, slot.slotId);
  const points = history.points.map((p) => ({ t: Date.parse(p.t), v: p.v }));
  const marks = history.events.map((e) => ({ t: Date.parse(e.t), label: EVENT_LABELS[e.kind] || e.kind, kind: e.kind }));
  const runOut = slot.expectedRunOutDate ? Date.parse(slot.expectedRunOutDate) : null;
  const nextOrder = slot.expectedReplenishmentDate ? Date.parse(slot.expectedReplenishmentDate) : null;
  const delivery = slot.order.estimatedDeliveryDate ? Date.parse(slot.order.estimatedDeliveryDate) : null;
  const caption = document.createElement("figcaption");
  caption.id = `chart-caption-${device.serial}-${slot.slotId}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const parts = [`${slot.slotId} level over time: ${points.length} reading${points.length === 1 ? "" : "s"} seen`];
  for (const mark of marks) parts.push(`${mark.label} ${dateFormat.format(mark.t)}`);
  if (runOut) parts.push(`forecast run-out ${dateFormat.format(runOut)}`);
  if (delivery) parts.push(`delivery expected ${dateFormat.format(delivery)}`);
  caption.textContent = parts.join("; ") + ".";
  if (!points.length) {
    figure.replaceChildren(caption);
    return;
  }
  const times = [...points.map((p) => p.t), ...marks.map((m) => m.t), runOut, nextOrder, delivery].filter(Number.isFinite);
  const t0 = Math.min(...times);
  const t1 = Math.max(t0 + DAY, ...times);
  const top = Math.max(slot.originalQuantity || 0, ...points.map((p) => p.v), 1);
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const svg = element("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-labelledby": caption.id, class: "level-chart" });
  const bottom = HEIGHT - PAD.bottom;
  svg.append(
    element("line", { x1: PAD.left, y1: bottom, x2: WIDTH - PAD.right, y2: bottom, class: "chart-axis" }),
    element("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: bottom, class: "chart-axis" }),
    element("text", { x: PAD.left - 4, y: PAD.top + 4, "text-anchor": "end", class: "chart-tick" }, String(Math.round(top))),
    element("text", { x: PAD.left - 4, y: bottom, "text-anchor": "end", class: "chart-tick" }, "0"),
    element("text", { x: PAD.left, y: HEIGHT - 6, class: "chart-tick" }, dateFormat.format(t0)),
    element("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end", class: "chart-tick" }, dateFormat.format(t1)),
  );
  if (slot.policy) {
    const threshold = y(slot.policy.thresholdFraction * (slot.originalQuantity || top));
    svg.append(element("line", { x1: PAD.left, y1: threshold, x2: WIDTH - PAD.right, y2: threshold, class: "chart-threshold" }));
  }
  for (const [when, name] of [[nextOrder, "next order"], [delivery, "delivery"]]) {
    if (!Number.isFinite(when)) continue;
    const line = element("line", { x1: x(when), y1: PAD.top, x2: x(when), y2: bottom, class: `chart-marker chart-${name.replace(" ", "-")}` });
    line.append(element("title", {}, `${name} ${dateFormat.format(when)}`));
    svg.append(line);
  }
  svg.append(element("polyline", { points: points.map((p) => `${x(p.t)},${y(p.v)}`).join(" "), class: "chart-level" }));
  const last = points[points.length - 1];
  if (Number.isFinite(runOut) && runOut > last.t) {
    svg.append(element("line", { x1: x(last.t), y1: y(last.v), x2: x(runOut), y2: y(0), class: "chart-forecast" }));
  }
  for (const point of points) svg.append(element("circle", { cx: x(point.t), cy: y(point.v), r: 2.5, class: "chart-reading" }));
  for (const mark of marks) {
    const group = element("g", { class: `chart-event chart-${mark.kind}` });
    group.append(
      element("path", { d: `M ${x(mark.t)} ${PAD.top} l -4 -7 h 8 z`, transform: "translate(0 7)" }),
      element("title", {}, `${mark.label} ${dateFormat.format(mark.t)}`),
    );
    svg.append(group);
  }
  figure.replaceChildren(svg, caption);
}
