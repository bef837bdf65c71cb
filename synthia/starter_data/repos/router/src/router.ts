export type Params = Record<string, string>;
export type Handler = (params: Params) => string;

interface Route {
  method: string;
  parts: string[];
  handler: Handler;
}

/** Matches request paths such as /users/42 against patterns such as /users/:id. */
export class Router {
  private routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method, parts: split(pattern), handler });
    return this;
  }

  /** The first matching route's result, or undefined when nothing matches. */
  handle(method: string, path: string): string | undefined {
    const parts = split(path);
    for (const route of this.routes) {
      // TODO: report the allowed methods when only the method differs
      if (route.method !== method || route.parts.length !== parts.length) continue;
      const params: Params = {};
      const ok = route.parts.every((p, i) => {
        if (!p.startsWith(":")) return p === parts[i];
        params[p.slice(1)] = decodeURIComponent(parts[i]);
        return true;
      });
      if (ok) return route.handler(params);
    }
    return undefined;
  }
}

function split(path: string): string[] {
  return path.split("/").filter((p) => p !== "");
}
