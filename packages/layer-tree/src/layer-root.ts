/**
 * A directory treated as the root of a file system: relative paths (byte strings, one character per byte,
 * so names that are not UTF-8 work) are resolved inside it, symbolic links followed as if it were `/`.
 */
import { chownSync, lstatSync, mkdirSync, readlinkSync, type Stats } from 'node:fs';
import { layerError } from './errors.js';

const maxSymlinkHops = 255;

/** Paths inside the root are byte strings (one character per byte), so names that are not UTF-8 work. */
export class LayerRoot {
  private readonly rootBytes: Buffer;
  private readonly rootLatin1: string;
  /** Relative paths known to be real directories (not links), checked or made by us. */
  private readonly directories = new Set<string>(['']);

  constructor(
    root: string,
    private readonly implicitOwner: { uid: number; gid: number } | undefined,
    /** Told about each directory `resolveDirectory` creates. */
    private readonly onCreateDirectory?: (relative: string) => void,
  ) {
    this.rootBytes = Buffer.from(root.endsWith('/') ? root.slice(0, -1) : root, 'utf8');
    this.rootLatin1 = this.rootBytes.toString('latin1');
  }

  full(relative: string): Buffer {
    if (relative === '') return this.rootBytes;
    const root = this.rootBytes;
    // One character per byte: the Latin-1 length is the string's length.
    const out = Buffer.allocUnsafe(root.length + 1 + relative.length);
    root.copy(out, 0);
    out[root.length] = 0x2f; // '/'
    out.write(relative, root.length + 1, 'latin1');
    return out;
  }

  /** `full(relative)` as a Latin-1 string (one character per byte), for callers that copy it into a buffer. */
  fullLatin1(relative: string): string {
    return relative === '' ? this.rootLatin1 : `${this.rootLatin1}/${relative}`;
  }

  forget(relative: string): void {
    if (relative === '') return;
    this.directories.delete(relative);
    const prefix = `${relative}/`;
    for (const known of this.directories) if (known.startsWith(prefix)) this.directories.delete(known);
  }

  rememberDirectory(relative: string): void {
    this.directories.add(relative);
  }

  /** Whether `relative` is known to be a real directory: resolving it needs no file-system call. */
  isKnownDirectory(relative: string): boolean {
    return this.directories.has(relative);
  }

  lstat(relative: string): Stats | undefined {
    return lstatSync(this.full(relative), { throwIfNoEntry: false });
  }

  /**
   * Resolves the directory `components` inside the root, following symbolic links as if the root were
   * `/`. Missing directories are created (mode 0755, owned by the mapped root) when `create` is set.
   * Returns the real relative path, or undefined when a component is missing and `create` is not set.
   */
  resolveDirectory(components: string[], entry: string, create: boolean): string | undefined {
    const pending = components.slice().reverse();
    const resolved: string[] = [];
    let hops = 0;
    while (pending.length > 0) {
      const component = pending.pop() as string;
      if (component === '' || component === '.') continue;
      if (component === '..') {
        resolved.pop();
        continue;
      }
      resolved.push(component);
      const relative = resolved.join('/');
      if (this.directories.has(relative)) continue;
      const stats = this.lstat(relative);
      if (stats === undefined) {
        if (!create) return undefined;
        mkdirSync(this.full(relative), 0o755);
        if (this.implicitOwner)
          chownSync(this.full(relative), this.implicitOwner.uid, this.implicitOwner.gid);
        this.directories.add(relative);
        this.onCreateDirectory?.(relative);
        continue;
      }
      if (stats.isDirectory()) {
        this.directories.add(relative);
        continue;
      }
      if (stats.isSymbolicLink()) {
        if (++hops > maxSymlinkHops)
          throw layerError(`layer tar: entry "${entry}": too many levels of symbolic links`);
        const target = readlinkSync(this.full(relative), { encoding: 'buffer' }).toString('latin1');
        resolved.pop();
        if (target.startsWith('/')) resolved.length = 0;
        const targetComponents = target.split('/');
        for (let index = targetComponents.length - 1; index >= 0; index--)
          pending.push(targetComponents[index] as string);
        continue;
      }
      throw layerError(`layer tar: entry "${entry}": "${relative}" is not a directory`);
    }
    return resolved.join('/');
  }
}
