import { test } from "node:test";
import assert from "node:assert/strict";
import { Router } from "../src/router.js";

const router = new Router()
  .add("GET", "/users/:id", (p) => `user ${p.id}`)
  .add("GET", "/users/:id/posts/:post", (p) => `post ${p.post} of ${p.id}`)
  .add("POST", "/users", () => "created");

test("extracts named params", () => {
  assert.equal(router.handle("GET", "/users/7/posts/3"), "post 3 of 7");
});

test("ignores trailing slashes and decodes params", () => {
  assert.equal(router.handle("GET", "/users/a%20b/"), "user a b");
});

test("method must match", () => {
  assert.equal(router.handle("DELETE", "/users"), undefined);
});
