// Run after `npm install` changes package-lock.json. Some platform builds that packages list as
// optionalDependencies (rivetkit's engines, cbor-extract) are missing from the registry this
// project installs from, so npm leaves them out of the lock, and `npm ci` then refuses the lock as
// out of sync. This adds each missing one as an optional entry for its own os/cpu, which `npm ci`
// skips on other platforms (and tolerates failing on this one).
import { readFileSync, writeFileSync } from "node:fs";

const file = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(file, "utf8"));
const packages = lock.packages;

function platformOf(name) {
  const tail = name.split("/").pop();
  const os = ["darwin", "linux", "win32", "freebsd", "android"].filter((o) => tail.includes(o));
  const cpu = tail.includes("arm64") ? ["arm64"] : ["x64", "arm", "ia32"].filter((c) => tail.split("-").includes(c));
  const libc = tail.includes("musl") ? ["musl"] : tail.includes("gnu") ? ["glibc"] : undefined;
  return { os, cpu, libc };
}

/** Where node would find `name` from the package at `at`: its own node_modules, then upwards. */
function present(at, name) {
  for (let dir = at; ; dir = dir.slice(0, dir.lastIndexOf("node_modules/")).replace(/\/$/, "")) {
    if (packages[(dir ? dir + "/" : "") + "node_modules/" + name]) return true;
    if (!dir) return false;
  }
}

let added = 0;
for (const [at, entry] of Object.entries(packages)) {
  for (const [name, range] of Object.entries(entry.optionalDependencies ?? {})) {
    if (present(at, name)) continue;
    const { os, cpu, libc } = platformOf(name);
    const where = (at.lastIndexOf("node_modules/") > 0 ? at.slice(0, at.lastIndexOf("node_modules/")) : "") + "node_modules/" + name;
    packages[where] = { version: range.replace(/^[\^~=]/, ""), optional: true, os, cpu, ...(libc ? { libc } : {}) };
    added++;
  }
}
writeFileSync(file, JSON.stringify(lock, null, 2) + "\n");
console.log(`added ${added} missing optional platform entries`);
