import { test } from "node:test";
import assert from "node:assert/strict";
import { parse } from "../src/parse.js";
import { stringify } from "../src/stringify.js";

test("parses single values", () => {
  assert.deepEqual(parse("a=1&b=two"), { a: "1", b: "two" });
});

test("collects repeated keys into arrays", () => {
  assert.deepEqual(parse("?tag=x&tag=y&tag=z"), { tag: ["x", "y", "z"] });
});

test("decodes plus signs and percent escapes", () => {
  assert.deepEqual(parse("q=hello+world&city=S%C3%A3o"), { q: "hello world", city: "São" });
});

test("stringify sorts keys and repeats arrays", () => {
  assert.equal(stringify({ b: ["1", "2"], a: "x y" }), "a=x%20y&b=1&b=2");
});
