// Talking to `canvas serve`: JSON requests with the Bearer token (asked once, kept in sessionStorage),
// Server-Sent Events read through fetch (EventSource cannot send the token), errors shown in words.

const TOKEN_KEY = "canvas-token";

export class ApiError extends Error {
  constructor(status, message, field) {
    super(field ? `${message} (field "${field}")` : message);
    this.status = status;
    this.field = field;
  }
}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

// The server asked for a token: ask the user once, then retry.
function askToken() {
  const token = window.prompt("This server needs its token (the --token it was started with):");
  if (!token) throw new ApiError(401, "this server needs a token, and none was given");
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}

async function send(method, path, body) {
  for (let attempt = 0; ; ++attempt) {
    const sentToken = sessionStorage.getItem(TOKEN_KEY);
    const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, `the server cannot be reached (${error.message})`);
    }
    if (response.status === 401 && attempt < 3) {
      // Requests refused together ask once: a token given meanwhile is tried first.
      if (sessionStorage.getItem(TOKEN_KEY) === sentToken) {
        sessionStorage.removeItem(TOKEN_KEY);
        askToken();
      }
      continue;
    }
    return response;
  }
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body.error) return new ApiError(response.status, body.error.message, body.error.field);
  } catch (_) {
    // Not our JSON error: the status says what there is to say.
  }
  return new ApiError(response.status, `${response.status} ${response.statusText}`);
}

export async function api(method, path, body) {
  const response = await send(method, path, body);
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// The bytes of an image the server holds, as an object URL (an <img src> cannot send the token).
export async function imageUrl(path) {
  const response = await send("GET", path);
  if (!response.ok) throw await errorOf(response);
  return URL.createObjectURL(await response.blob());
}

// Reads the job's events until the stream ends or `signal` aborts; calls onEvent(type, data) for each.
export async function streamEvents(path, onEvent, signal) {
  const response = await fetch(path, { headers: headers(), signal });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(type, JSON.parse(data.join("\n")));
    }
  }
}

// Errors in the page: a line each, which the user can dismiss.
// Appends to `element` a "×" button, titled `title`, that removes the element.
export function addRemoveButton(element, title) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "×";
  button.title = title;
  button.addEventListener("click", () => element.remove());
  element.append(button);
}

export function showError(error) {
  const message = error instanceof Error ? error.message : String(error);
  const line = document.createElement("div");
  line.className = "error";
  line.textContent = message;
  addRemoveButton(line, "dismiss");
  document.getElementById("errors").append(line);
}

// Runs an async action, showing what it throws.
export function guarded(action) {
  return async (...args) => {
    try {
      return await action(...args);
    } catch (error) {
      showError(error);
    }
  };
}
