// @ts-check
/**
 * Server-Sent Events over fetch. EventSource cannot send an Authorization header or a POST body, so the
 * page reads the streamed response itself; this is the parser, per the WHATWG event-stream rules
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
 */

/** @typedef {{ event: string, data: string, id: string | null }} SseEvent */

/** Incremental parser: feed it text as it arrives, it returns the events completed so far. */
export class SseParser {
  #buffer = "";
  #event = "";
  /** @type {string[]} */
  #data = [];
  /** @type {string | null} */
  #id = null;
  #sawField = false;

  /**
   * @param {string} chunk text of the stream, split anywhere (even inside a line or a CRLF)
   * @returns {SseEvent[]}
   */
  feed(chunk) {
    this.#buffer += chunk;
    /** @type {SseEvent[]} */
    const out = [];
    for (;;) {
      const m = /\r\n|\n|\r/.exec(this.#buffer);
      // A lone CR at the end may be the first half of a CRLF: wait for the next chunk.
      if (!m || (m[0] === "\r" && m.index === this.#buffer.length - 1)) break;
      const line = this.#buffer.slice(0, m.index);
      this.#buffer = this.#buffer.slice(m.index + m[0].length);
      const ev = this.#line(line);
      if (ev) out.push(ev);
    }
    return out;
  }

  /**
   * The stream ended: a CR held back (it might have begun a CRLF) ends its line after all; an event
   * without its closing blank line is then dropped, as the spec says.
   * @returns {SseEvent[]}
   */
  end() {
    const out = this.#buffer.endsWith("\r") ? this.feed("\n") : [];
    this.#buffer = "";
    this.#reset();
    return out;
  }

  /** @param {string} line */
  #line(line) {
    if (line === "") {
      if (!this.#sawField || this.#data.length === 0) {
        this.#reset();
        return null;
      }
      const ev = { event: this.#event || "message", data: this.#data.join("\n"), id: this.#id };
      this.#reset();
      return ev;
    }
    if (line.startsWith(":")) return null; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    this.#sawField = true;
    if (field === "event") this.#event = value;
    else if (field === "data") this.#data.push(value);
    else if (field === "id" && !value.includes("\0")) this.#id = value;
    return null;
  }

  #reset() {
    this.#event = "";
    this.#data = [];
    this.#sawField = false;
  }
}

/**
 * Yields the events of a streamed response body, in order, as they arrive.
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<SseEvent>}
 */
export async function* readSse(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* parser.feed(decoder.decode(value, { stream: true }));
    }
    yield* parser.feed(decoder.decode());
    yield* parser.end();
  } finally {
    reader.releaseLock();
  }
}
