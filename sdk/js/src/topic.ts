// The canonical topic: `<route>:<canonical JSON of the request>`, byte-
// identical to the Rust and Python SDKs (tests/topic-vectors.json): keys
// sorted recursively by code point, no whitespace, null as "", UTF-8 kept,
// integers as integers, floats as Python's repr (1.0, 1e-05, 1e+16).
//
// A JavaScript number does not know whether the client wrote `1` or `1.0`.
// Rust and Python print a float field as a float because the field's type
// says so; here the request's JSON Schema says so: a number at a place the
// schema types as `number` (and not `integer`) prints as a float, so `1`
// sent for a `Type.Number()` prints `1.0`. Elsewhere an integer-valued
// number prints as an integer.

/** A JSON Schema, as far as the topic builder reads it. */
export type JsonSchemaLike = boolean | { readonly [keyword: string]: unknown };

const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;

/** `<route>:<canonical JSON of request>`; `schema` types its numbers. */
export function defaultTopic(route: string, request: unknown, schema?: JsonSchemaLike): string {
  return `${route}:${canonicalJson(request, schema)}`;
}

/** The canonical JSON text of a JSON value; `schema` types its numbers. */
export function canonicalJson(value: unknown, schema?: JsonSchemaLike): string {
  const root = typeof schema === "object" ? schema : undefined;
  return write(value, schema, root);
}

type Obj = { readonly [keyword: string]: unknown };

function write(value: unknown, schema: JsonSchemaLike | undefined, root: Obj | undefined): string {
  const s = resolve(schema, root);
  if (value === null || value === undefined) return '""';
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      // Escapes exactly `"`, `\` and control characters, like serde_json
      // and Python's json.dumps(ensure_ascii=False).
      return JSON.stringify(value);
    case "number":
      return numberText(value, numberKind(s, root, 0) === "float");
    case "bigint":
      return value >= I64_MIN && value <= U64_MAX ? value.toString() : pythonFloat(Number(value));
    case "object": {
      if (Array.isArray(value)) {
        const prefix = Array.isArray(s?.["prefixItems"]) ? (s["prefixItems"] as JsonSchemaLike[]) : [];
        const items = s?.["items"] as JsonSchemaLike | undefined;
        return `[${value.map((v, i) => write(v, prefix[i] ?? items, root)).join(",")}]`;
      }
      const record = value as Record<string, unknown>;
      const props = (s?.["properties"] ?? {}) as Record<string, JsonSchemaLike>;
      const patterns = Object.entries((s?.["patternProperties"] ?? {}) as Record<string, JsonSchemaLike>);
      const extra = s?.["additionalProperties"] as JsonSchemaLike | undefined;
      const schemaOf = (k: string): JsonSchemaLike | undefined => {
        if (Object.hasOwn(props, k)) return props[k];
        for (const [pattern, sub] of patterns) if (matches(pattern, k)) return sub;
        return extra;
      };
      const keys = Object.keys(record).sort(compareCodePoints);
      const parts = keys.map((k) => `${JSON.stringify(k)}:${write(record[k], schemaOf(k), root)}`);
      return `{${parts.join(",")}}`;
    }
    default:
      throw new TypeError(`not a JSON value: ${typeof value}`);
  }
}

function matches(pattern: string, key: string): boolean {
  try {
    return new RegExp(pattern, "u").test(key);
  } catch {
    return false;
  }
}

function numberText(n: number, float: boolean): string {
  if (!Number.isFinite(n)) throw new TypeError(`not a JSON number: ${n}`);
  if (float || !Number.isInteger(n)) return pythonFloat(n);
  if (Number.isSafeInteger(n)) return String(n === 0 ? 0 : n);
  // Integer-valued beyond 2^53: as an integer within 64 bits, as the Rust
  // host reads it; beyond, as a float (serde_json reads those as floats).
  const big = BigInt(n);
  return big >= I64_MIN && big <= U64_MAX ? big.toString() : pythonFloat(n);
}

/** Follows a local `$ref` (`#/$defs/...`, `#/definitions/...`). */
function resolve(schema: JsonSchemaLike | undefined, root: Obj | undefined): Obj | undefined {
  let s = typeof schema === "object" ? schema : undefined;
  for (let hops = 0; s && typeof s["$ref"] === "string" && hops < 32; hops++) {
    const ref = s["$ref"] as string;
    if (!ref.startsWith("#/") || !root) return undefined;
    let target: unknown = root;
    for (const part of ref.slice(2).split("/")) {
      const key = part.replaceAll("~1", "/").replaceAll("~0", "~");
      target = target && typeof target === "object" ? (target as Obj)[key] : undefined;
    }
    s = target && typeof target === "object" ? (target as Obj) : undefined;
  }
  return s;
}

type Kind = "float" | "int" | "any";

/** Whether the schema says a number here is a float (`number` and never `integer`). */
function numberKind(s: Obj | undefined, root: Obj | undefined, depth: number): Kind {
  if (!s || depth > 32) return "any";
  const types = Array.isArray(s["type"]) ? (s["type"] as unknown[]) : [s["type"]];
  if (types.includes("integer")) return "int";
  if (types.includes("number")) return "float";
  let kind: Kind = "any";
  for (const combinator of ["anyOf", "oneOf", "allOf"]) {
    const branches = s[combinator];
    if (!Array.isArray(branches)) continue;
    for (const branch of branches) {
      const k = numberKind(resolve(branch as JsonSchemaLike, root), root, depth + 1);
      // A union admitting integers keeps integers (Rust's untagged enums
      // try the integer first): only an all-float union forces `1.0`.
      if (k === "int") return "int";
      if (k === "float") kind = "float";
    }
  }
  return kind;
}

/** Compare strings by Unicode code point (Python's and Rust's order). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      // UTF-16 order differs from code point order only between a surrogate
      // (part of a code point above U+FFFF) and U+E000..U+FFFF.
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/** Python's `repr(float)`. */
export function pythonFloat(x: number): string {
  if (!Number.isFinite(x)) throw new TypeError(`not a JSON number: ${x}`);
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  // toExponential() without digits gives the shortest round-trip digits.
  let s = x.toExponential();
  const negative = s.startsWith("-");
  if (negative) s = s.slice(1);
  const [mantissa = "", expText = "0"] = s.split("e");
  const exp = Number(expText);
  const digits = mantissa.replace(".", "");
  let out: string;
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      const intLen = exp + 1;
      out =
        digits.length <= intLen
          ? `${digits}${"0".repeat(intLen - digits.length)}.0`
          : `${digits.slice(0, intLen)}.${digits.slice(intLen)}`;
    } else {
      out = `0.${"0".repeat(-exp - 1)}${digits}`;
    }
  } else {
    const frac = digits.length > 1 ? `.${digits.slice(1)}` : "";
    const sign = exp < 0 ? "-" : "+";
    out = `${digits[0]}${frac}e${sign}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  return negative ? `-${out}` : out;
}
