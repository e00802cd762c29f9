// The companion web app: sign in with Login with Amazon (authorization code + PKCE), link devices
// through the DRS consent, watch levels and orders, change a slot's reorder policy, unlink.
// Plain ES module, no build step; config.json (next to this file) says where the API and LWA are.
import { renderChart, recordObservation, forgetDevice } from "./chart.js";

const TOKEN_KEY = "companion.accessToken";
const PENDING_KEY = "companion.pending";
const SIGN_IN_SCOPE = "profile";
const DRS_SCOPE = "dash:replenish";

// Readable messages for the API's error codes (docs/api.md §1); the API's own message follows.
const ERROR_MESSAGES = {
  DEVICE_ALREADY_LINKED: "This device is already linked to another Amazon account.",
  INVALID_AUTHORIZATION_CODE: "Amazon did not accept the consent. Please link the device again.",
  DEVICE_NOT_FOUND: "This device is not linked to your account.",
  SLOT_NOT_FOUND: "This slot does not exist on the device.",
  NOT_A_TEST_DEVICE: "Test orders can only be cancelled on a test device.",
  REAUTH_REQUIRED: "Amazon needs you to link this device again.",
  DEVICE_NOT_LINKED: "This device is not linked any more.",
  INVALID_EXIT_URI: "The settings page could not be opened from here.",
  INVALID_REQUEST: "Some of the values were not accepted.",
  UPSTREAM_UNAVAILABLE: "Amazon did not answer. Please try again in a moment.",
  UPSTREAM_ERROR: "Amazon refused the request.",
  SLOT_BUSY: "The slot is busy with another change. Please try again.",
  UNAUTHORIZED: "Your sign-in is no longer valid. Please sign in again.",
};
const ORDER_STATES = {
  NONE: "No open order",
  REQUESTED: "Ordering…",
  PLACED: "Placed",
  SHIPPED: "Shipped",
  CANCELLED: "Cancelled",
};

const $ = (selector, root = document) => root.querySelector(selector);
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });
const formatDate = (iso) => (iso ? dateFormat.format(new Date(iso)) : "—");
const formatNumber = (value) => Number(value).toLocaleString(undefined, { maximumFractionDigits: 1 });

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// A message written for the customer, shown as it is.
class Refusal extends Error {}

let config;
let refreshTimer;

// ------------------------------------------------------------------------------------------ messages

function showError(error) {
  const box = $("#alert");
  let text;
  if (error instanceof ApiError) {
    const known = ERROR_MESSAGES[error.code];
    text = known ? `${known} (${error.message})` : error.message;
  } else if (error instanceof Refusal) {
    text = error.message;
  } else {
    text = `Something went wrong: ${error.message || error}`;
  }
  box.textContent = text;
  box.hidden = false;
  box.focus?.();
}

function clearError() {
  $("#alert").hidden = true;
  $("#alert").textContent = "";
}

function notify(text) {
  $("#notice").textContent = text;
}

// ------------------------------------------------------------------------------------------ HTTP

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`${config.apiBaseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (networkError) {
    throw new ApiError(0, "NETWORK", "The service could not be reached. Check your connection.");
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let payload = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok) {
    if (payload && payload.error) throw new ApiError(response.status, payload.error.code, payload.error.message);
    // API Gateway's own answers ({"message": "Forbidden"}): the authorizer refused the sign-in.
    if (response.status === 401 || response.status === 403) {
      throw new ApiError(response.status, "UNAUTHORIZED", (payload && payload.message) || "Forbidden");
    }
    throw new ApiError(response.status, "HTTP_" + response.status, (payload && payload.message) || response.statusText);
  }
  return payload;
}

// ------------------------------------------------------------------------------------------ LWA + PKCE

function randomString(bytes) {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return base64Url(data);
}

function base64Url(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function s256(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64Url(new Uint8Array(digest));
}

function redirectUri() {
  return `${location.origin}${location.pathname}`;
}

// Send the browser to Login with Amazon; `pending` is what to do when it comes back.
async function authorize(scope, pending, scopeData) {
  const verifier = randomString(32);
  const state = randomString(16);
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ ...pending, state, verifier }));
  const params = new URLSearchParams({
    client_id: config.lwa.clientId,
    response_type: "code",
    scope,
    redirect_uri: redirectUri(),
    state,
    code_challenge: await s256(verifier),
    code_challenge_method: "S256",
  });
  if (scopeData) params.set("scope_data", JSON.stringify(scopeData));
  location.assign(`${config.lwa.authorizeUrl}?${params}`);
}

// Back from Login with Amazon: finish the sign-in or the link the pending record describes.
async function completeAuthorization(query) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
  sessionStorage.removeItem(PENDING_KEY);
  history.replaceState(null, "", redirectUri());
  if (!pending || query.get("state") !== pending.state) {
    throw new Refusal("The answer from Amazon does not belong to this session. Please try again.");
  }
  if (query.get("error")) {
    const reason = query.get("error") === "access_denied" ? "You did not allow access on Amazon." : query.get("error_description") || query.get("error");
    throw new Refusal(reason);
  }
  const code = query.get("code");
  if (pending.kind === "sign-in") {
    await exchangeSignInCode(code, pending.verifier);
    notify("Signed in.");
    return;
  }
  const body = {
    modelId: pending.modelId,
    authorizationCode: code,
    redirectUri: redirectUri(),
    codeVerifier: pending.verifier,
    isTestDevice: pending.isTestDevice,
  };
  if (pending.pairingCode) body.pairingCode = pending.pairingCode;
  const answer = await api("POST", `/v1/devices/${encodeURIComponent(pending.serial)}/registration`, body);
  showCredential(pending.serial, answer.deviceToken);
  notify(`Device ${pending.serial} is linked.`);
}

async function exchangeSignInCode(code, verifier) {
  let response;
  try {
    // A form-encoded POST without custom headers: a CORS "simple request", no preflight needed.
    response = await fetch(config.lwa.tokenUrl, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code,
        redirect_uri: redirectUri(),
        client_id: config.lwa.clientId,
        code_verifier: verifier,
      }),
    });
  } catch {
    throw new Refusal("Login with Amazon could not be reached. Check your connection.");
  }
  const payload = await response.json().catch(() => ({}));
  if (!response.ok || !payload.access_token) {
    throw new Refusal(`Login with Amazon refused the sign-in (${payload.error_description || payload.error || response.status}).`);
  }
  sessionStorage.setItem(TOKEN_KEY, payload.access_token);
}

// ------------------------------------------------------------------------------------------ views

function showCredential(serial, token) {
  $("#credential-serial").textContent = serial;
  $("#device-token").textContent = token;
  $("#credential").hidden = false;
}

function render(signedIn) {
  $("#signed-out").hidden = signedIn;
  $("#signed-in").hidden = !signedIn;
  $("#sign-out").hidden = !signedIn;
  $("#who").hidden = !signedIn;
  $("#who").textContent = signedIn ? "Signed in with Amazon" : "";
}

let shown = "";

async function refreshDevices({ background = false } = {}) {
  const { devices } = await api("GET", "/v1/devices");
  const snapshot = JSON.stringify(devices);
  // A background refresh never redraws under the user's hands (a policy being edited) or for nothing.
  if (background && (snapshot === shown || document.activeElement?.closest(".policy-form"))) return;
  shown = snapshot;
  const list = $("#devices");
  const focused = document.activeElement && document.activeElement.id;
  list.replaceChildren(...devices.map(renderDevice));
  $("#no-devices").hidden = devices.length > 0;
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
}

async function safeRefresh(options) {
  try {
    await refreshDevices(options);
  } catch (error) {
    showError(error);
    // The sign-in is no longer accepted (revoked, or expired): back to the Sign in button.
    if (error instanceof ApiError && error.code === "UNAUTHORIZED") endSession();
  }
}

function renderDevice(device) {
  const node = $("#device-template").content.firstElementChild.cloneNode(true);
  const id = `device-${device.serial}`;
  node.id = id;
  node.dataset.serial = device.serial;
  $(".device-title", node).textContent = `${device.serial} · ${modelName(device.modelId)}`;
  const status = { LINKED: "Linked", REAUTH_REQUIRED: "Needs to be linked again", DEREGISTERED: "Unlinked: link it again to resume reordering" }[device.status];
  $(".device-status", node).textContent =
    `${status}${device.isTestDevice ? " · test device" : ""} · last reading ${formatDate(device.lastActiveAt)}`;
  $(".slots", node).replaceChildren(...device.slots.map((slot) => renderSlot(device, slot)));
  const settings = $(".settings", node);
  settings.setAttribute("aria-label", `Amazon settings of ${device.serial}`);
  settings.addEventListener("click", () => openSettings(device.serial));
  const cancel = $(".cancel-test-orders", node);
  cancel.hidden = !device.isTestDevice;
  cancel.setAttribute("aria-label", `Cancel the test orders of ${device.serial}`);
  cancel.addEventListener("click", () => cancelTestOrders(device.serial));
  const unlink = $(".unlink", node);
  unlink.setAttribute("aria-label", `Unlink ${device.serial}`);
  unlink.addEventListener("click", () => unlinkDevice(device.serial));
  if (device.status === "DEREGISTERED") {
    // Unlinked (here, or on Amazon): nothing to change any more until it is linked again.
    $(".device-actions", node).hidden = true;
    for (const form of node.querySelectorAll(".policy-form")) form.hidden = true;
  }
  return node;
}

function renderSlot(device, slot) {
  const node = $("#slot-template").content.firstElementChild.cloneNode(true);
  const base = `${device.serial}-${slot.slotId}`.replace(/[^A-Za-z0-9_-]/g, "_");
  node.id = `slot-${base}`;
  node.dataset.slot = slot.slotId;
  const unit = slot.unit || "";
  $(".slot-title", node).textContent = slot.subscribed ? `${slot.slotId} (${slot.asin})` : `${slot.slotId} (no product picked)`;
  const meter = $(".gauge", node);
  meter.id = `gauge-${base}`;
  meter.max = slot.originalQuantity || 1;
  meter.value = Math.min(slot.remainingQuantity, meter.max);
  meter.low = slot.policy.thresholdFraction * meter.max;
  meter.optimum = meter.max;
  const label = $(".gauge-label", node);
  label.htmlFor = meter.id;
  label.textContent = `${slot.slotId} level`;
  const percent = slot.originalQuantity ? Math.round((100 * slot.remainingQuantity) / slot.originalQuantity) : 0;
  $(".level", node).textContent = `${formatNumber(slot.remainingQuantity)} of ${formatNumber(slot.originalQuantity)} ${unit} (${percent} %)`;
  $(".run-out", node).textContent = formatDate(slot.expectedRunOutDate);
  $(".next-order", node).textContent = formatDate(slot.expectedReplenishmentDate);
  let order = ORDER_STATES[slot.order.state] || slot.order.state;
  if (slot.order.state === "CANCELLED" && slot.order.cooldownUntil) order += ` · no reorder before ${formatDate(slot.order.cooldownUntil)}`;
  $(".order-state", node).textContent = order;
  $(".delivery", node).textContent = slot.order.estimatedDeliveryDate ? `expected ${formatDate(slot.order.estimatedDeliveryDate)}` : "—";
  recordObservation(device, slot);
  renderChart($(".chart", node), device, slot);
  bindPolicyForm(node, device.serial, slot, base);
  return node;
}

function bindPolicyForm(node, serial, slot, base) {
  const form = $(".policy-form", node);
  const fields = [
    [".threshold", ".threshold-label", `threshold-${base}`],
    [".lead-time", ".lead-label", `lead-${base}`],
    [".auto-reorder", ".auto-label", `auto-${base}`],
  ];
  for (const [input, label, id] of fields) {
    $(input, form).id = id;
    $(label, form).htmlFor = id;
  }
  $("legend", form).textContent = `Reorder policy of ${slot.slotId}`;
  $(".threshold", form).value = Math.round(slot.policy.thresholdFraction * 100);
  $(".lead-time", form).value = slot.policy.leadTimeDays;
  $(".auto-reorder", form).checked = slot.policy.autoReorder;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    if (!form.reportValidity()) return;
    try {
      await api("PUT", `/v1/devices/${encodeURIComponent(serial)}/slots/${encodeURIComponent(slot.slotId)}/policy`, {
        thresholdFraction: Number($(".threshold", form).value) / 100,
        leadTimeDays: Number($(".lead-time", form).value),
        autoReorder: $(".auto-reorder", form).checked,
      });
      notify(`Policy of ${serial} ${slot.slotId} saved.`);
      await refreshDevices();
    } catch (error) {
      showError(error);
    }
  });
}

function modelName(modelId) {
  const known = (config.deviceModels || []).find((model) => model.modelId === modelId);
  return known ? known.name : modelId;
}

// ------------------------------------------------------------------------------------------ actions

async function openSettings(serial) {
  clearError();
  try {
    const exitUri = redirectUri();
    const { url } = await api("GET", `/v1/devices/${encodeURIComponent(serial)}/settings-link?exitUri=${encodeURIComponent(exitUri)}`);
    location.assign(url);
  } catch (error) {
    showError(error);
  }
}

async function cancelTestOrders(serial) {
  clearError();
  try {
    await api("DELETE", `/v1/devices/${encodeURIComponent(serial)}/test-orders`);
    notify(`Test orders of ${serial} cancelled.`);
    await refreshDevices();
  } catch (error) {
    showError(error);
  }
}

async function unlinkDevice(serial) {
  clearError();
  if (!confirm(`Unlink ${serial}? It will stop reordering from Amazon.`)) return;
  try {
    await api("DELETE", `/v1/devices/${encodeURIComponent(serial)}/registration`);
    forgetDevice(serial);
    notify(`Device ${serial} is unlinked.`);
    await refreshDevices();
  } catch (error) {
    showError(error);
  }
}

async function linkDevice(event) {
  event.preventDefault();
  clearError();
  const form = event.target;
  if (!form.reportValidity()) return;
  const serial = $("#link-serial").value.trim();
  const modelId = $("#link-model").value;
  const isTestDevice = $("#link-test").checked;
  const pairingCode = $("#link-pairing").value.trim();
  const scopeData = { [DRS_SCOPE]: { device_model: modelId, serial, is_test_device: isTestDevice } };
  await authorize(DRS_SCOPE, { kind: "link", serial, modelId, isTestDevice, pairingCode }, scopeData);
}

function endSession() {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(refreshTimer);
  shown = "";
  $("#devices").replaceChildren();
  $("#credential").hidden = true;
  render(false);
}

function signOut() {
  clearError();
  endSession();
  notify("Signed out.");
}

// ------------------------------------------------------------------------------------------ start

async function start() {
  try {
    config = await (await fetch("config.json", { cache: "no-store" })).json();
  } catch {
    showError(new Error("the app's configuration (config.json) could not be loaded"));
    return;
  }
  config.apiBaseUrl = (config.apiBaseUrl || "").replace(/\/$/, "");
  $("#link-model").replaceChildren(
    ...(config.deviceModels || []).map((model) => new Option(`${model.name} (${model.modelId})`, model.modelId)),
  );
  $("#sign-in").addEventListener("click", () => authorize(SIGN_IN_SCOPE, { kind: "sign-in" }).catch(showError));
  $("#sign-out").addEventListener("click", signOut);
  $("#refresh").addEventListener("click", () => { clearError(); safeRefresh(); });
  $("#credential-done").addEventListener("click", () => {
    $("#device-token").textContent = "";
    $("#credential").hidden = true;
  });
  $("#link-form").addEventListener("submit", (event) => linkDevice(event).catch(showError));

  const query = new URLSearchParams(location.search);
  if (query.has("state")) {
    try {
      await completeAuthorization(query);
    } catch (error) {
      showError(error);
    }
  }
  const signedIn = Boolean(sessionStorage.getItem(TOKEN_KEY));
  render(signedIn);
  if (signedIn) {
    await safeRefresh();
    // Levels and orders change in the background (readings, Amazon's notifications): keep them fresh.
    refreshTimer = setInterval(() => { if (!document.hidden) safeRefresh({ background: true }); }, (config.refreshSeconds || 30) * 1000);
  }
}

start();
