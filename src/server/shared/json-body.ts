import type { FastifyInstance, FastifyRequest } from "fastify";
import { ValidationError } from "../../errors/omni-error.js";
import { parseJsonSafely } from "./safe-json.js";

const utf8 = new TextDecoder("utf-8", { fatal: true });

function unsupported(message: string, field: string): ValidationError {
  return new ValidationError(message, { field, statusCode: 415, data: { openaiCode: "unsupported_media_type" } });
}

/** The `charset` parameter of a Content-Type, lower-cased, or undefined. */
function charsetOf(contentType: string | undefined): string | undefined {
  const m = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? "");
  return m?.[1]?.toLowerCase();
}

/**
 * Replaces fastify's JSON parser (and its text parser) on `app` with the shared safe one: a body is
 * `application/json` in UTF-8, not compressed, at most `maxDepth` levels deep, without prototype-polluting
 * keys. A `Content-Encoding` other than identity, or a charset other than UTF-8, is a 415 (the body is
 * refused, not misread); bytes that are not UTF-8, malformed JSON or too deep a document are a 400; other
 * content types keep fastify's 415, and the size limit its 413.
 */
export function installJsonBodyParser(app: FastifyInstance, opts: { maxDepth: number }): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (req: FastifyRequest, body: Buffer, done) => {
    try {
      const encoding = String(req.headers["content-encoding"] ?? "identity").trim().toLowerCase();
      if (encoding !== "identity" && encoding !== "") {
        throw unsupported(`Content-Encoding "${encoding}" is not supported; send the body uncompressed`, "content-encoding");
      }
      const charset = charsetOf(req.headers["content-type"]);
      if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
        throw unsupported(`charset "${charset}" is not supported; send the body as UTF-8 JSON`, "content-type");
      }
      let text: string;
      try {
        text = utf8.decode(body);
      } catch (err) {
        throw new ValidationError("the request body is not valid UTF-8", { field: "body", cause: err, data: { openaiCode: "invalid_json" } });
      }
      done(null, parseJsonSafely(text.replace(/^\uFEFF/, ""), { maxDepth: opts.maxDepth, field: "body" }));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}
