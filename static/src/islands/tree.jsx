// A JSON value as a collapsible tree (native <details>: keyboard and screen-reader friendly),
// and a flat diff of two values by path.

function isObject(value) {
  return value !== null && typeof value === "object";
}

function preview(value) {
  if (Array.isArray(value)) return `[${value.length}]`;
  if (isObject(value)) return `{${Object.keys(value).length}}`;
  return "";
}

function Leaf({ value }) {
  if (value === null) return <span className="tree__null">null</span>;
  if (typeof value === "string") return <span className="tree__string">{value}</span>;
  return <span className={`tree__${typeof value}`}>{String(value)}</span>;
}

export function JsonTree({ value, name, depth = 0, openDepth = 1, changed }) {
  const mark = changed && name !== undefined && changed.has(name) ? " tree__key--changed" : "";
  if (!isObject(value)) {
    return (
      <div className="tree__row">
        {name !== undefined ? <span className={`tree__key${mark}`}>{name}: </span> : null}
        <Leaf value={value} />
      </div>
    );
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  return (
    <details className="tree" open={depth < openDepth}>
      <summary>
        {name !== undefined ? <span className={`tree__key${mark}`}>{name}</span> : null}{" "}
        <span className="tree__preview">{preview(value)}</span>
      </summary>
      <div className="tree__children">
        {entries.length === 0 ? <span className="muted">empty</span> : null}
        {entries.map(([key, child]) => (
          <JsonTree key={key} name={key} value={child} depth={depth + 1} openDepth={openDepth} />
        ))}
      </div>
    </details>
  );
}

export function flatten(value, prefix = "", out = {}) {
  if (isObject(value)) {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    if (entries.length === 0) out[prefix] = Array.isArray(value) ? [] : {};
    for (const [key, child] of entries) flatten(child, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out[prefix] = value;
  }
  return out;
}

// Paths added, removed and changed from `before` to `after`.
export function diff(before, after) {
  const a = flatten(before);
  const b = flatten(after);
  const changes = [];
  for (const path of Object.keys(b)) {
    if (!(path in a)) changes.push({ path, kind: "added", after: b[path] });
    else if (JSON.stringify(a[path]) !== JSON.stringify(b[path])) {
      changes.push({ path, kind: "changed", before: a[path], after: b[path] });
    }
  }
  for (const path of Object.keys(a)) if (!(path in b)) changes.push({ path, kind: "removed", before: a[path] });
  return changes;
}

export function short(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text && text.length > 80 ? `${text.slice(0, 77)}…` : text;
}

// A list item's identity: its key, id or name, so that lists compare item by item whatever
// their order. Lists of plain values compare as sets.
function identity(item, index) {
  if (isObject(item) && !Array.isArray(item)) {
    for (const field of ["key", "id", "name", "entity", "path", "role"]) {
      if (item[field] != null && typeof item[field] !== "object") return `${field}=${item[field]}`;
    }
  }
  if (!isObject(item)) return `=${JSON.stringify(item)}`;
  return String(index);
}

export function keyedFlatten(value, prefix = "", out = {}) {
  if (Array.isArray(value)) {
    if (value.length === 0) out[prefix] = [];
    value.forEach((item, index) => {
      const path = `${prefix}[${identity(item, index)}]`;
      if (isObject(item)) keyedFlatten(item, path, out);
      else out[path] = item;
    });
  } else if (isObject(value)) {
    const entries = Object.entries(value);
    if (entries.length === 0) out[prefix] = {};
    for (const [key, child] of entries) keyedFlatten(child, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out[prefix] = value;
  }
  return out;
}

// Like `diff`, but list items are matched by identity (key, id, name...) instead of position.
export function keyedDiff(before, after) {
  const a = keyedFlatten(before);
  const b = keyedFlatten(after);
  const changes = [];
  for (const path of Object.keys(b)) {
    if (!(path in a)) changes.push({ path, kind: "added", after: b[path] });
    else if (JSON.stringify(a[path]) !== JSON.stringify(b[path])) {
      changes.push({ path, kind: "changed", before: a[path], after: b[path] });
    }
  }
  for (const path of Object.keys(a)) if (!(path in b)) changes.push({ path, kind: "removed", before: a[path] });
  return changes;
}
