"""The built-in page served when no frontend/ directory is installed: it shows a seed's face.

Kept as a Python string so it ships inside any wheel without package-data rules.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>dragwalk</title>
<style>
  body { font: 15px system-ui, sans-serif; margin: 2em; background: #111; color: #eee; }
  img { width: 256px; height: 256px; image-rendering: pixelated; border: 1px solid #444; display: block; margin: 1em 0; }
  input { width: 6em; }
</style>
</head>
<body>
<h1>dragwalk</h1>
<p>The editor page is not installed here; this is the server's built-in preview.</p>
<label>seed <input id="seed" type="number" value="0"></label>
<button id="go">show</button>
<img id="face" alt="generated face">
<p id="status"></p>
<script>
const token = new URLSearchParams(location.search).get("token");
const headers = {"Content-Type": "application/json"};
if (token) headers["Authorization"] = "Bearer " + token;
async function show() {
  const seed = parseInt(document.getElementById("seed").value || "0", 10);
  const status = document.getElementById("status");
  status.textContent = "generating...";
  const r = await fetch("/api/sessions", {method: "POST", headers, body: JSON.stringify({seed})});
  const body = await r.json();
  if (!r.ok) { status.textContent = body.error ? body.error.message : r.statusText; return; }
  const q = token ? "?token=" + encodeURIComponent(token) : "";
  document.getElementById("face").src = "/api/sessions/" + body.id + "/image.png" + q;
  status.textContent = "session " + body.id + " (" + body.model + ", seed " + body.seed + ")";
}
document.getElementById("go").onclick = show;
show();
</script>
</body>
</html>
"""
