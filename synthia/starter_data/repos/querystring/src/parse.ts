export type Query = Record<string, string | string[]>;

/** Parse "a=1&b=2&b=3" into { a: "1", b: ["2", "3"] }. A leading "?" is ignored. */
export function parse(input: string): Query {
  const query: Query = {};
  const text = input.startsWith("?") ? input.slice(1) : input;
  for (const pair of text.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    // TODO: support the a[]=1 array syntax
    const key = decode(eq === -1 ? pair : pair.slice(0, eq));
    const value = eq === -1 ? "" : decode(pair.slice(eq + 1));
    const previous = query[key];
    if (previous === undefined) query[key] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else query[key] = [previous, value];
  }
  return query;
}

function decode(part: string): string {
  return decodeURIComponent(part.replace(/\+/g, " "));
}
