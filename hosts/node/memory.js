// A memory limit for the plugin in Node. V8 has no store limiter, so the
// limit is written into the core modules themselves: every memory a module
// defines gets a maximum of at most `maxPages` 64 KiB pages, and past it the
// guest's `memory.grow` fails (its allocator then traps) instead of taking
// the host's memory.

function readLeb(bytes, pos) {
  let value = 0;
  let shift = 0;
  let byte;
  do {
    byte = bytes[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, pos];
}

function leb(value) {
  const out = [];
  do {
    let byte = value & 0x7f;
    value = Math.floor(value / 128);
    if (value) byte |= 0x80;
    out.push(byte);
  } while (value);
  return out;
}

/** `bytes` (a core wasm module) with each defined memory capped at
 *  `maxPages`. Throws on a memory it cannot cap (shared, 64-bit, or one
 *  whose minimum is already above the cap). */
export function capMemory(bytes, maxPages) {
  const parts = [bytes.subarray(0, 8)];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, body] = readLeb(bytes, pos + 1);
    const end = body + size;
    if (id !== 5) {
      parts.push(bytes.subarray(pos, end));
      pos = end;
      continue;
    }
    let [count, p] = readLeb(bytes, body);
    const entries = leb(count);
    for (let i = 0; i < count; i += 1) {
      const flags = bytes[p++];
      if (flags & ~1) throw new Error(`a memory with flags ${flags} cannot be capped`);
      let min;
      let max = Infinity;
      [min, p] = readLeb(bytes, p);
      if (flags & 1) [max, p] = readLeb(bytes, p);
      const cap = Math.min(max, maxPages);
      if (min > cap) throw new Error(`a memory of at least ${min} pages is over the limit of ${maxPages}`);
      entries.push(1, ...leb(min), ...leb(cap));
    }
    parts.push(Uint8Array.of(5, ...leb(entries.length), ...entries));
    pos = end;
  }
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
