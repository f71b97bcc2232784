/**
 * Exports: fetch first, save second, so a refusal from the server (no drag yet,
 * no MP4 encoder ...) becomes a message instead of a saved error document.
 */

/**
 * @param {string} url
 * @param {string} filename
 * @returns {Promise<string|null>} null when saved, else what went wrong in words.
 */
export async function downloadFile(url, filename) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    return `cannot reach the server (${err.message})`;
  }
  if (!response.ok) {
    try {
      return (await response.json())?.error?.message ?? `${response.status} ${response.statusText}`;
    } catch {
      return `${response.status} ${response.statusText}`;
    }
  }
  const blobUrl = URL.createObjectURL(await response.blob());
  const a = Object.assign(document.createElement("a"), { href: blobUrl, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(blobUrl), 10000);
  return null;
}
