import type { FastifyInstance } from "fastify";
import type { ZodError, ZodType } from "zod";

/** Turns a schema mismatch into the error its API answers with (each API keeps its own error shape). */
export type SchemaErrorMapper = (err: ZodError) => Error;

/**
 * Makes route schemas zod schemas for `app` and the plugins it registers after this call: each is compiled
 * once, when its route is registered, and a mismatch fails the request with `toError(zodError)` (which the
 * API's error handler then answers). The parsed value (coercions, defaults) replaces the raw one. Every
 * fastify app of the package (the OpenAI server and its dialect plugins, the worker server) uses this one
 * compiler, so a schema means the same thing on every route.
 */
export function useZodValidator(app: FastifyInstance, toError: SchemaErrorMapper): void {
  app.setValidatorCompiler(({ schema }) => {
    const zod = schema as ZodType;
    return (data: unknown) => {
      const r = zod.safeParse(data);
      return r.success ? { value: r.data } : { error: toError(r.error) };
    };
  });
}
