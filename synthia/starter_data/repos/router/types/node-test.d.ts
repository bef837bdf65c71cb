// Just enough of Node's test runner and assert module for tsc; the project has no @types/node.
declare module "node:test" {
  export function test(name: string, fn: () => void | Promise<void>): void;
}

declare module "node:assert/strict" {
  const assert: {
    equal(actual: unknown, expected: unknown, message?: string): void;
    deepEqual(actual: unknown, expected: unknown, message?: string): void;
    throws(fn: () => unknown, expected?: RegExp): void;
    ok(value: unknown, message?: string): void;
  };
  export default assert;
}
