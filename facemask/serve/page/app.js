// facemask page: send a photo to POST /predict, draw a box per face with its three answers and probability bars.
// Plain JavaScript, no build step, no external files: it works offline.
"use strict";
const $ = (id) => document.getElementById(id);
const COLOURS = { "wear": "#1f883d", "incorrect": "#bf8700", "not wear": "#cf222e" };
let token = localStorage.getItem("facemask-token") || "";

function headers() { return token ? { "Authorization": "Bearer " + token } : {}; }
function setState(state) { document.body.dataset.state = state; }

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  setState("error");
}

async function describeModel() {
  const response = await fetch("info", { headers: headers() });
  if (response.status === 401) {
    $("token-box").hidden = false;
    $("model").textContent = "This server needs a token.";
    setState("token");
    return;
  }
  const info = await response.json();
  if (!response.ok) { showError(info.error || response.statusText); return; }
  $("model").textContent = `Model ${info.runs.join(" + ")}: ${info.backbones.join(", ")}, input ` +
    `${info.input_sizes.map((s) => s.join("x")).join(", ")}, engine ${info.engines.join(", ")}, ` +
    `faces: ${info.face_detector === "none" ? "the whole photo" : info.face_detector}.`;
  setState("ready");
}

async function send(blob, name) {
  $("error").hidden = true;
  setState("busy");
  const form = new FormData();
  form.append("file", blob, name || "photo");
  const started = performance.now();
  let response, body;
  try {
    response = await fetch("predict", { method: "POST", body: form, headers: headers() });
  } catch (err) {
    showError("The server did not answer: " + err);
    return;
  }
  try {
    body = await response.json();
  } catch (err) {
    body = {};  // not JSON (e.g. a proxy's or the server's plain-text 503): the status line says what happened
  }
  if (!response.ok) {
    showError(`${response.status}: ${body.error || response.statusText}`);
    if (response.status === 401) { $("token-box").hidden = false; }
    return;
  }
  try {
    await draw(blob, body, performance.now() - started);
  } catch (err) {  // e.g. a TIFF: the server reads it, this browser cannot draw it
    showError("The answer came back but this browser cannot show the photo: " + err);
  }
}

function bars(probs) {
  return Object.entries(probs).map(([name, p], i, all) => {
    const top = p === Math.max(...all.map(([, q]) => q));
    return `<div class="bar${top ? " top" : ""}"><span>${name}</span><span class="track"><span class="fill" ` +
      `style="width:${(100 * p).toFixed(1)}%"></span></span><span>${(100 * p).toFixed(0)}%</span></div>`;
  }).join("");
}

async function draw(blob, result, roundTrip) {
  const image = await createImageBitmap(blob, { imageOrientation: "from-image" });
  const canvas = $("canvas");
  canvas.width = result.width || image.width;
  canvas.height = result.height || image.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  const list = $("faces");
  list.innerHTML = "";
  window.lastFaces = result.faces.filter((f) => f.box && f.mask);
  const line = Math.max(2, Math.round(canvas.width / 300));
  result.faces.forEach((face, i) => {
    const item = document.createElement("li");
    item.className = "face";
    if (face.box && face.status !== "error") {
      const [left, top, right, bottom] = face.box;
      ctx.strokeStyle = COLOURS[face.mask] || "#2b6cb0";
      ctx.lineWidth = line;
      ctx.strokeRect(left, top, right - left, bottom - top);
      ctx.font = `${Math.max(14, line * 7)}px system-ui, sans-serif`;
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillText(`${i + 1}`, left + line, Math.max(top - line * 2, 14));
    }
    if (face.mask) {
      item.innerHTML = `<h3>Face ${i + 1}${face.status !== "face" ? " (" + face.status.replace("_", " ") + ")" : ""}` +
        `</h3><p><span class="answer mask">${face.mask}</span> · <span class="answer gender">${face.gender}</span> · ` +
        `<span class="answer age">${face.age}</span></p>` +
        `<h4>mask</h4>${bars(face.probs.mask)}<h4>gender</h4>${bars(face.probs.gender)}` +
        `<h4>age</h4>${bars(face.probs.age)}`;
    } else {
      item.innerHTML = `<h3>${face.status === "no_face" ? "No face found" : "No answer"}</h3><p>${face.note}</p>`;
    }
    item.dataset.status = face.status;
    list.appendChild(item);
  });
  const found = result.faces.filter((f) => f.mask).length;
  $("timing").textContent = `${found} face${found === 1 ? "" : "s"} answered in ${result.ms.toFixed(0)} ms on ` +
    `the server (${roundTrip.toFixed(0)} ms round trip), model ${result.model}.`;
  $("result").hidden = false;
  setState("done");
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) send(file, file.name);
});
const drop = $("drop");
["dragenter", "dragover"].forEach((e) => drop.addEventListener(e, (ev) => { ev.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((e) => drop.addEventListener(e, (ev) => { ev.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (ev) => {
  const file = ev.dataTransfer.files[0];
  if (file) send(file, file.name);
});
$("save-token").addEventListener("click", () => {
  token = $("token").value.trim();
  localStorage.setItem("facemask-token", token);
  $("token-box").hidden = true;
  describeModel();
});

// The camera, where the browser allows it (a secure context: https or localhost).
let stream = null;
if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) { $("camera-button").hidden = false; }
$("camera-button").addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true });
    $("video").srcObject = stream;
    $("camera").hidden = false;
  } catch (err) {
    showError("The camera is not available: " + err.message);
  }
});
function stopCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("camera").hidden = true;
}
$("stop").addEventListener("click", stopCamera);
$("snap").addEventListener("click", () => {
  const video = $("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => { stopCamera(); send(blob, "camera.jpg"); }, "image/jpeg", 0.92);
});

describeModel().catch((err) => showError("Cannot reach the server: " + err));
