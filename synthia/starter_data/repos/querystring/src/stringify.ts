import type { Query } from "./parse.js";

/** Inverse of parse: keys are sorted so the output is stable. */
export function stringify(query: Query): string {
  const pairs: string[] = [];
  for (const key of Object.keys(query).sort()) {
    const value = query[key];
    for (const v of Array.isArray(value) ? value : [value]) {
      pairs.push(`${encodeURIComponent(key)}=${encodeURIComponent(v)}`);
    }
  }
  return pairs.join("&");
}
