/**
 * An OSTree repository, driven through Debian's `ostree` command for everything that hashes file
 * content and directory trees (`ostree commit --tree=dir=`, `checkout`, `cat`, `refs`, `init`), and
 * read directly for refs and commit objects. Commit objects are written directly (see README: the
 * layer's tar-split is too large for a command-line argument).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, existsSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import { type FileHandle, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { abortError, ErrorCodes, GantryError, ownedTemporaryName } from '@gantry/core/transport';
import {
  type CommitObject,
  GVariantFormatError,
  parseCommit,
  parseDirTreeDirectories,
  serializeCommit,
  type TreeChecksums,
} from './gvariant.js';
import { renameNoReplace, syncFileSystemOf } from './native.js';

const checksumPattern = /^[0-9a-f]{64}$/;

export interface RunOptions {
  signal?: AbortSignal | undefined;
}

/**
 * The error of an `ostree` command that failed: `stderr` is what it printed. A full disk is reported
 * as the other transports report it, a system error with code `ENOSPC` ("no space left on device"),
 * whether the file system refused a write or libostree refused to go below the repository's reserve
 * (`min-free-space-percent` / `min-free-space-size`, "would be exceeded"); an aborted run gives the
 * signal's reason (`interrupted by SIGINT`…).
 */
export function ostreeError(
  args: readonly string[],
  error: unknown,
  stderr: string,
  signal?: AbortSignal,
): Error {
  const code = (error as { code?: unknown }).code;
  if (code === 'ENOENT') {
    return new GantryError(
      ErrorCodes.NotSupported,
      'the ostree: transport needs the `ostree` command (Debian package `ostree`), which is not installed',
      { cause: error },
    );
  }
  if (signal?.aborted) return abortError(signal);
  if (code === 'ABORT_ERR') return new GantryError(ErrorCodes.Aborted, 'operation aborted', { cause: error });
  const message = stderr.trim() || (error as Error).message;
  const repository = args.find((arg) => arg.startsWith('--repo='))?.slice('--repo='.length);
  if (/No space left on device|min-free-space-(percent|size) .* would be exceeded/i.test(message)) {
    const reason = message.replace(/^error:\s*/, '');
    return Object.assign(
      new Error(
        `ostree ${args[0]}${repository ? ` in ${repository}` : ''}: no space left on device (${reason})`,
        { cause: error },
      ),
      { code: 'ENOSPC', errno: -28 },
    );
  }
  return new GantryError(ErrorCodes.InvalidLayout, `ostree ${args[0]}: ${message}`, { cause: error });
}

/** Runs `ostree ARGS`, returning its standard output. */
export function runOstree(args: readonly string[], options: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'ostree',
      args,
      {
        maxBuffer: 256 * 1024 * 1024,
        encoding: 'utf8',
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (error, stdout, stderr) => {
        if (error) reject(ostreeError(args, error, stderr, options.signal));
        else resolve(stdout);
      },
    );
  });
}

/** The settings of a repository's `[core]` section a staging repository keeps (see `createStaging`). */
const keptCoreSettings = new Set([
  'min-free-space-percent',
  'min-free-space-size',
  'fsync',
  'per-object-fsync',
]);

function coreSettingsToKeep(config: string): Map<string, string> {
  const kept = new Map<string, string>();
  let section = '';
  for (const line of config.split('\n')) {
    const header = /^\s*\[(.*)\]\s*$/.exec(line);
    if (header) {
      section = header[1]!.trim();
      continue;
    }
    const setting = /^\s*([^=#;\s]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (section === 'core' && setting && keptCoreSettings.has(setting[1]!))
      kept.set(setting[1]!, setting[2]!);
  }
  return kept;
}

/**
 * Objects `publishInto` moved: `[where it was, where it is]`, directories or files; `['', directory]`
 * for an `objects/XX/` directory it made.
 */
export type PublishedObjects = Array<[string, string]>;

/** Moves published objects back where they came from (best effort: one that cannot be moved stays). */
export function unpublish(moved: PublishedObjects): void {
  for (const [from, to] of [...moved].reverse()) {
    try {
      if (from === '') rmdirSync(to);
      else renameNoReplace(to, from);
    } catch {
      // left in the repository: an unreferenced object, which `ostree prune` removes
    }
  }
  moved.length = 0;
}

function missingObjectsDirectory(repository: string): GantryError {
  return new GantryError(
    ErrorCodes.InvalidLayout,
    `${repository} is not an OSTree repository: it has no objects directory`,
  );
}

export type RepositoryMode =
  | 'bare'
  | 'bare-user'
  | 'bare-user-only'
  | 'archive-z2'
  | 'archive'
  | 'bare-split-xattrs';

/** `mkdir` that accepts an existing directory. */
async function makeDirectory(path: string): Promise<void> {
  try {
    await mkdir(path, { mode: 0o775 });
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'EEXIST') throw error;
  }
}

/**
 * Creates the repository `ostree init --mode=MODE` creates, without starting a process: the directory
 * (its parent must exist), the config (`[core]`, `repo_version=1`, `mode`; written in `tmp/` and renamed
 * into place, unless one is there already: it is kept), `extensions/`, `state/`, `refs/heads|mirrors|remotes/`,
 * `objects/` last, and `tmp/cache/`, each mode 0775 less the umask, as libostree makes them. Every step
 * accepts what is there already, so it also completes a repository being created by another process.
 */
async function createRepository(path: string, mode: RepositoryMode, options: RunOptions): Promise<void> {
  options.signal?.throwIfAborted();
  try {
    await makeDirectory(path);
    await makeDirectory(join(path, 'tmp'));
    const config = join(path, 'config');
    if (!existsSync(config)) {
      // An owned name: left by a process killed here, the next copy's clean-up of `tmp/` removes it.
      const temporary = join(path, 'tmp', ownedTemporaryName('ostree-config'));
      await writeFile(temporary, `[core]\nrepo_version=1\nmode=${mode}\n`, { mode: 0o644, flag: 'wx' });
      try {
        renameNoReplace(temporary, config); // 'exists': another process wrote it first, and it is kept
      } finally {
        await rm(temporary, { force: true });
      }
    }
    for (const directory of ['extensions', 'state', 'refs', 'refs/heads', 'refs/mirrors', 'refs/remotes']) {
      await makeDirectory(join(path, directory));
    }
    await makeDirectory(join(path, 'objects'));
    await makeDirectory(join(path, 'tmp', 'cache'));
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ENOSPC') throw error;
    throw new GantryError(
      ErrorCodes.InvalidLayout,
      `${path}: cannot create an OSTree repository: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

export class OstreeRepository {
  /**
   * The commits `ostree commit` made only to hash a tree (no metadata): `commitWithMetadata` writes the
   * real commit beside each. `publishInto` leaves them out.
   */
  private readonly treeCommits = new Set<string>();
  /**
   * The root listings (`.dirtree`) of streamed trees (`subdirectoriesOf`), which hold a layer, config or
   * manifest as a subdirectory with a random name: referenced by nothing else, `publishInto` leaves them
   * out too.
   */
  private readonly streamRoots = new Set<string>();

  private constructor(
    readonly path: string,
    readonly mode: string,
    /** The `[core]` settings a staging repository copies (`createStaging`). */
    private readonly coreSettings: ReadonlyMap<string, string> = new Map(),
    /**
     * A staging repository whose writes are not synced one by one (libostree's and this class's): it is
     * written out as a whole by `syncBeforePublishing`, before `publishInto` moves its objects.
     */
    private readonly syncedAsAWhole = false,
  ) {}

  /**
   * Whether layer streams write this repository's objects themselves (`NativeTree`) rather than through
   * `ostree commit`: a `bare` repository written as root (owners set as recorded), whose objects need
   * not be synced one by one (`per-object-fsync`) and whose free-space reserve is a percentage only
   * (`min-free-space-size` is left to libostree). `GANTRY_OSTREE_WRITER=ostree` turns it off.
   */
  nativeWrites(): boolean {
    if (process.env.GANTRY_OSTREE_WRITER === 'ostree') return false;
    const perObject = this.coreSettings.get('per-object-fsync')?.toLowerCase();
    return (
      this.mode === 'bare' &&
      process.getuid?.() === 0 &&
      perObject !== 'true' &&
      perObject !== '1' &&
      !this.coreSettings.has('min-free-space-size')
    );
  }

  /** `min-free-space-percent`: libostree's default, 3, unless set. */
  freeSpacePercent(): number {
    const setting = this.coreSettings.get('min-free-space-percent');
    const value = setting === undefined ? 3 : Number.parseInt(setting, 10);
    return Number.isFinite(value) && value >= 0 ? value : 3;
  }

  /** Whether this repository's writes are to reach the disk before they count (its `fsync` setting). */
  private get syncs(): boolean {
    const setting = this.coreSettings.get('fsync')?.toLowerCase();
    return setting !== 'false' && setting !== '0';
  }

  /** Opens an existing repository; `ERR_GANTRY_INVALID_LAYOUT` when `path` holds something else. */
  static async open(path: string): Promise<OstreeRepository> {
    let config: string;
    try {
      config = await readFile(join(path, 'config'), 'utf8');
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const reason =
        code === 'ENOENT' || code === 'ENOTDIR' ? 'it has no config file' : (error as Error).message;
      throw new GantryError(ErrorCodes.InvalidLayout, `${path} is not an OSTree repository: ${reason}`, {
        cause: error,
      });
    }
    const mode = /^\s*mode\s*=\s*(\S+)/m.exec(config)?.[1];
    if (!/^\s*\[core\]/m.test(config) || mode === undefined || !existsSync(join(path, 'objects'))) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${path} is not an OSTree repository: its config has no [core] mode, or it has no objects directory`,
      );
    }
    return new OstreeRepository(path, mode, coreSettingsToKeep(config));
  }

  /**
   * Creates an empty repository at `path` (which must not exist) to write into before publishing to
   * `target` (`publishInto`): `target`'s mode and free-space reserve, so that libostree refuses exactly as
   * it would writing into `target`. `path` must be on `target`'s file system (its `tmp/`). The layout is
   * the one `ostree init` makes, written here (no process).
   *
   * Syncing: libostree ends every transaction with a `syncfs` of the repository's file system (one per
   * `ostree commit`), and each commit object and ref written here was synced on its own. In a staging
   * repository none of them is (`fsync=false`): `syncBeforePublishing` writes the file system out once,
   * after the last commit and before any object reaches `target` or a branch points at it, which is
   * the order libostree guarantees. A `target` with `fsync=false` is not synced at all, as libostree
   * would not; one with `per-object-fsync=true` keeps its settings (each object synced as it is written).
   */
  static async createStaging(path: string, target: OstreeRepository): Promise<OstreeRepository> {
    await mkdir(path, { mode: 0o755 });
    for (const directory of [
      'objects',
      'tmp',
      'extensions',
      'state',
      'refs/heads',
      'refs/mirrors',
      'refs/remotes',
    ]) {
      await mkdir(join(path, directory), { recursive: true, mode: 0o755 });
    }
    const perObject = target.coreSettings.get('per-object-fsync')?.toLowerCase();
    const syncedAsAWhole = target.syncs && perObject !== 'true' && perObject !== '1';
    const settings = new Map(target.coreSettings);
    if (syncedAsAWhole) settings.set('fsync', 'false');
    const lines = [...settings].map(([key, value]) => `${key}=${value}\n`).join('');
    await writeFile(join(path, 'config'), `[core]\nrepo_version=1\nmode=${target.mode}\n${lines}`, {
      mode: 0o644,
    });
    const staging = new OstreeRepository(path, target.mode, target.coreSettings, syncedAsAWhole);
    if (syncedAsAWhole) await staging.syncHandle();
    return staging;
  }

  /**
   * Writes a staging repository's objects out to the disk (one `syncfs` of its file system) when it was
   * made without syncing them one by one (`createStaging`); nothing to do otherwise.
   */
  async syncBeforePublishing(): Promise<void> {
    if (!this.syncedAsAWhole) return;
    await this.writingOut?.running;
    const handle = await this.syncHandle();
    try {
      await syncFileSystemOf(handle.fd, this.path);
    } finally {
      await this.closeSyncHandle();
    }
    // A write-back error an earlier `startWritingOut` was told of is reported to no later sync.
    if (this.writingOut?.failure) throw this.writingOut.failure.error;
  }

  /**
   * For a staging repository synced as a whole: starts writing out what its commits have written so
   * far (a `syncfs` in the background, unless one is running), so that `syncBeforePublishing` has
   * less left to wait for. An error is kept for `syncBeforePublishing`, which reports it.
   */
  startWritingOut(): void {
    if (!this.syncedAsAWhole || this.writingOut?.running || this.syncHandleClosed) return;
    this.writingOut ??= {};
    const writingOut = this.writingOut;
    writingOut.running = (async () => {
      try {
        await syncFileSystemOf((await this.syncHandle()).fd, this.path);
      } catch (error) {
        writingOut.failure ??= { error };
      } finally {
        writingOut.running = undefined;
      }
    })();
  }

  /**
   * The descriptor every sync of a staging repository uses, opened when it was created (before any
   * write): the kernel reports a write-back error once per open file, so that no error a background
   * sync saw is lost, and none that came before that sync either.
   */
  private syncHandle(): Promise<FileHandle> {
    this.syncHandlePromise ??= open(this.path, 'r');
    return this.syncHandlePromise;
  }

  /** Closes the sync descriptor (after the last sync, or when the copy is abandoned). */
  async closeSyncHandle(): Promise<void> {
    this.syncHandleClosed = true;
    await this.writingOut?.running;
    const handle = this.syncHandlePromise;
    this.syncHandlePromise = undefined;
    await (await handle?.catch(() => undefined))?.close();
  }

  private syncHandlePromise: Promise<FileHandle> | undefined;
  private syncHandleClosed = false;
  private writingOut: { running?: Promise<void> | undefined; failure?: { error: unknown } } | undefined;

  /**
   * Opens the repository, creating it when `path` does not exist or is an empty directory: mode `bare`
   * as root, `bare-user` otherwise (what an unprivileged user can write and check out).
   */
  static async openOrCreate(path: string, options: RunOptions = {}): Promise<OstreeRepository> {
    let empty = false;
    try {
      const info = await stat(path);
      empty = info.isDirectory() && readdirSync(path).length === 0;
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ENOENT') throw error;
      empty = true;
    }
    // A repository another process is creating right now has no `objects/` yet (made last, here as by
    // `ostree init`): only `tmp/`, or a config too. Creating it again completes it (an existing config
    // is kept).
    const beingCreated =
      !empty &&
      !existsSync(join(path, 'objects')) &&
      (existsSync(join(path, 'config')) || readdirSync(path).every((name) => name === 'tmp'));
    if (empty || beingCreated) {
      await createRepository(path, process.getuid?.() === 0 ? 'bare' : 'bare-user', options);
    }
    return OstreeRepository.open(path);
  }

  private args(command: string, ...rest: string[]): string[] {
    return [command, `--repo=${this.path}`, ...rest];
  }

  /** The commit a branch points to, or undefined when the branch does not exist. */
  async resolveBranch(branch: string): Promise<string | undefined> {
    let content: string;
    try {
      content = await readFile(join(this.path, 'refs', 'heads', branch), 'utf8');
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
      throw error;
    }
    const checksum = content.trim();
    if (!checksumPattern.test(checksum)) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${this.path}: branch ${branch} holds "${checksum}", not a commit checksum`,
      );
    }
    return checksum;
  }

  private objectPath(checksum: string, type: string): string {
    return join(this.path, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.${type}`);
  }

  /** Reads a commit object, checking its checksum; a missing or corrupt commit is `ERR_GANTRY_INVALID_LAYOUT`. */
  async readCommit(checksum: string, what: string): Promise<CommitObject> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.objectPath(checksum, 'commit'));
    } catch (error) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${this.path}: ${what}: commit ${checksum} is missing`,
        {
          cause: error,
        },
      );
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== checksum) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${this.path}: ${what}: commit ${checksum} is corrupt (its content has checksum ${actual})`,
      );
    }
    try {
      return parseCommit(bytes);
    } catch (error) {
      if (!(error instanceof GVariantFormatError)) throw error;
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${this.path}: ${what}: commit ${checksum} is not a valid commit object: ${error.message}`,
        { cause: error },
      );
    }
  }

  /**
   * Commits the directory `root` (its content, owners, modes and extended attributes, hashed by
   * `ostree commit`) with string metadata and no parent, returning the commit checksum. No ref is
   * written: `setBranch` does that. The intermediate commit `ostree commit` writes to get the tree (no
   * metadata, no ref) stays as an unreferenced object until `ostree prune` removes it. `root` must be a
   * scratch directory: it is consumed (`--consume` moves its files into the repository where it can,
   * about twice as fast for many small files as copying them).
   */
  async commitDirectory(
    root: string,
    metadata: Map<string, string>,
    options: RunOptions = {},
  ): Promise<string> {
    const treeCommit = (
      await runOstree(
        this.args('commit', '--orphan', '--parent=none', '--subject=', '--consume', `--tree=dir=${root}`),
        options,
      )
    ).trim();
    if (!checksumPattern.test(treeCommit)) {
      throw new GantryError(ErrorCodes.Internal, `ostree commit printed "${treeCommit}", not a checksum`);
    }
    return this.commitWithMetadata(treeCommit, metadata);
  }

  /**
   * Writes the commit of the tree `treeCommit` (a commit `ostree commit` made, without metadata) with
   * string metadata and no parent, returning its checksum. `treeCommit` stays as an unreferenced object.
   */
  async commitWithMetadata(treeCommit: string, metadata: Map<string, string>): Promise<string> {
    this.treeCommits.add(treeCommit);
    const tree = await this.readCommit(treeCommit, `commit ${treeCommit}`);
    return this.commitTree({ tree: tree.rootTree, meta: tree.rootMeta }, metadata);
  }

  /**
   * The subdirectories of the root of `treeCommit` (a commit `ostree commit` made of a streamed tree,
   * see layer-stream.ts), by name. `publishInto` leaves that commit and its root listing out.
   */
  async subdirectoriesOf(treeCommit: string): Promise<Map<string, TreeChecksums>> {
    this.treeCommits.add(treeCommit);
    const { rootTree } = await this.readCommit(treeCommit, `commit ${treeCommit}`);
    this.streamRoots.add(rootTree);
    const path = this.objectPath(rootTree, 'dirtree');
    const bytes = await readFile(path);
    if (createHash('sha256').update(bytes).digest('hex') !== rootTree) {
      throw new GantryError(ErrorCodes.InvalidLayout, `${path}: the directory listing is corrupt`);
    }
    try {
      return parseDirTreeDirectories(bytes);
    } catch (error) {
      throw new GantryError(ErrorCodes.InvalidLayout, `${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /** Writes the commit of the tree `root` with string metadata and no parent, returning its checksum. */
  async commitTree(root: TreeChecksums, metadata: Map<string, string>): Promise<string> {
    const bytes = serializeCommit({
      metadata,
      parent: '',
      subject: '',
      body: '',
      timestamp: BigInt(Math.floor(Date.now() / 1000)),
      rootTree: root.tree,
      rootMeta: root.meta,
    });
    const checksum = createHash('sha256').update(bytes).digest('hex');
    await this.writeFileAtomically(this.objectPath(checksum, 'commit'), bytes);
    return checksum;
  }

  /** Writes `path` (its directory created when missing) through an owned temporary file in `tmp/`, synced, then renamed. */
  private async writeFileAtomically(path: string, bytes: Uint8Array | string): Promise<void> {
    const temporaryDirectory = join(this.path, 'tmp');
    await mkdir(temporaryDirectory, { recursive: true });
    await mkdir(join(path, '..'), { recursive: true });
    // An owned name: left by a process killed while writing it, it is removed by the next writer.
    const temporary = join(temporaryDirectory, ownedTemporaryName('ostree-write'));
    const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
    try {
      try {
        await handle.writeFile(bytes);
        if (!this.syncedAsAWhole) await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, path);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
  }

  /**
   * Points `branch` at `checksum` (creating or moving it): the loose ref file `refs/heads/<branch>`
   * (the checksum and a newline, as libostree writes it) replaced atomically, written here rather than
   * by `ostree refs --create`, which costs a process per branch.
   */
  async setBranch(branch: string, checksum: string, options: RunOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    if (!checksumPattern.test(checksum)) {
      throw new GantryError(ErrorCodes.Internal, `setBranch ${branch}: "${checksum}" is not a checksum`);
    }
    const components = branch.split('/');
    if (components.some((component) => component === '' || component === '.' || component === '..')) {
      throw new GantryError(ErrorCodes.Internal, `setBranch: "${branch}" is not a branch name`);
    }
    await this.writeFileAtomically(join(this.path, 'refs', 'heads', ...components), `${checksum}\n`);
  }

  /**
   * Moves every object of this (staging) repository into `target` (on the same file system), but the
   * tree-only commits of `commitWithMetadata` and `subdirectoriesOf` and the streamed trees' root listings: a whole `objects/XX/` directory when `target` has none
   * of that name, else object by object, never replacing an object `target` has already (the same
   * checksum, the same content). Synchronous, so that nothing else of this process runs in between.
   * Returns what moved, for `unpublish`; on failure, what moved is moved back first.
   */
  publishInto(target: OstreeRepository): PublishedObjects {
    const moved: PublishedObjects = [];
    const objects = join(this.path, 'objects');
    try {
      for (const prefix of readdirSync(objects)) {
        const from = join(objects, prefix);
        const to = join(target.path, 'objects', prefix);
        const entries = readdirSync(from);
        const names = entries.filter(
          (name) =>
            !(name.endsWith('.commit') && this.treeCommits.has(prefix + name.slice(0, -'.commit'.length))) &&
            !(name.endsWith('.dirtree') && this.streamRoots.has(prefix + name.slice(0, -'.dirtree'.length))),
        );
        if (names.length === 0) continue;
        if (names.length === entries.length) {
          const outcome = renameNoReplace(from, to);
          if (outcome === 'moved') {
            moved.push([from, to]);
            continue;
          }
          if (outcome === 'no-parent') throw missingObjectsDirectory(target.path);
        }
        for (const name of names) {
          const outcome = renameNoReplace(join(from, name), join(to, name));
          if (outcome === 'moved') moved.push([join(from, name), join(to, name)]);
          else if (outcome === 'no-parent') {
            // `objects/XX/` is missing after all (a prune removed it meanwhile): made, then tried again.
            mkdirSync(to, { mode: 0o755 });
            moved.push(['', to]);
            if (renameNoReplace(join(from, name), join(to, name)) === 'moved')
              moved.push([join(from, name), join(to, name)]);
          }
        }
      }
    } catch (error) {
      unpublish(moved);
      throw error;
    }
    return moved;
  }

  /** Removes `branch`'s ref file (written by `setBranch`), when it still holds `checksum`. */
  async removeBranchIfAt(branch: string, checksum: string): Promise<void> {
    if ((await this.resolveBranch(branch)) !== checksum) return;
    await rm(join(this.path, 'refs', 'heads', ...branch.split('/')), { force: true });
  }

  async deleteBranch(branch: string, options: RunOptions = {}): Promise<void> {
    await runOstree(this.args('refs', '--delete', branch), options);
  }

  /** Branches under `prefix/` (full names). */
  async listBranches(prefix: string, options: RunOptions = {}): Promise<string[]> {
    const output = await runOstree(this.args('refs', '--list', prefix), options);
    return output
      .split('\n')
      .filter((line) => line !== '')
      .map((name) => (name.startsWith(`${prefix}/`) ? name : `${prefix}/${name}`));
  }

  /** Removes objects no branch reaches any more. */
  async prune(options: RunOptions = {}): Promise<void> {
    await runOstree(this.args('prune', '--refs-only'), options);
  }

  /** Checks a commit out into `destination` (which must not exist), without owners unless root on a bare repository. */
  async checkout(checksum: string, destination: string, options: RunOptions = {}): Promise<void> {
    const userMode = this.mode !== 'bare' || process.getuid?.() !== 0;
    await runOstree(
      this.args('checkout', ...(userMode ? ['--user-mode'] : []), checksum, destination),
      options,
    );
  }

  /** One file of a commit's tree, as a stream (`ostree cat`). */
  catFile(checksum: string, path: string): Readable {
    const child: ChildProcess = spawn('ostree', this.args('cat', checksum, path), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const output = child.stdout!;
    async function* contents(): AsyncGenerator<Uint8Array> {
      const exited = new Promise<number | null>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', resolve);
      });
      for await (const chunk of output) yield chunk as Buffer;
      const status = await exited.catch((error: unknown) => {
        throw ostreeError(['cat'], error, stderr);
      });
      if (status !== 0) throw ostreeError(['cat'], new Error(`exit status ${status}`), stderr);
    }
    const stream = Readable.from(contents(), { objectMode: false });
    stream.on('close', () => {
      if (child.exitCode === null) child.kill();
    });
    return stream;
  }
}
