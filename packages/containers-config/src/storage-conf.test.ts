import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultStoreOptions } from './storage-conf.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-storage-conf-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('defaultStoreOptions', () => {
  it('reads $CONTAINERS_STORAGE_CONF, expands $UID and variables, and applies drop-ins in name order', async () => {
    const file = join(directory, 'storage.conf');
    await writeFile(
      file,
      [
        '[storage]',
        'driver = "overlay"',
        'graphroot = "$BASE/graph-$UID"',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: storage.conf's own ${VAR} syntax, expanded by the code under test
        'runroot = "${BASE}/run"',
        '[storage.options.overlay]',
        'mountopt = "nodev"',
        '',
      ].join('\n'),
    );
    await mkdir(`${file}.d`);
    await writeFile(join(`${file}.d`, '20-later.conf'), '[storage]\ndriver = "vfs"\n');
    await writeFile(join(`${file}.d`, '10-first.conf'), '[storage]\ndriver = "btrfs"\nrunroot = "/r"\n');
    await writeFile(join(`${file}.d`, 'ignored.txt'), 'not toml [');
    const options = defaultStoreOptions({ env: { CONTAINERS_STORAGE_CONF: file, BASE: directory }, uid: 0 });
    expect(options).toEqual({
      driver: 'vfs',
      graphRoot: join(directory, 'graph-0'),
      runRoot: '/r',
      driverOptions: ['overlay.mountopt=nodev'],
      transientStore: false,
      files: [file, join(`${file}.d`, '10-first.conf'), join(`${file}.d`, '20-later.conf')],
    });
  });

  it('lets STORAGE_DRIVER and STORAGE_OPTS override the file, and maps overlay2 to overlay', async () => {
    const file = join(directory, 'storage.conf');
    await writeFile(file, '[storage]\ndriver = "vfs"\ngraphroot = "/g"\nrunroot = "/r"\n');
    const options = defaultStoreOptions({
      env: {
        CONTAINERS_STORAGE_CONF: file,
        STORAGE_DRIVER: 'overlay2',
        STORAGE_OPTS: 'overlay.mountopt=nodev,overlay.foo=1',
      },
      uid: 0,
    });
    expect(options.driver).toBe('overlay');
    expect(options.driverOptions).toEqual(['overlay.mountopt=nodev', 'overlay.foo=1']);
  });

  it('reads transient_store, a later drop-in overriding it, and refuses a value that is not a boolean', async () => {
    const file = join(directory, 'storage.conf');
    await writeFile(file, '[storage]\ndriver = "vfs"\ntransient_store = true\n');
    const env = { CONTAINERS_STORAGE_CONF: file };
    expect(defaultStoreOptions({ env, uid: 0 }).transientStore).toBe(true);
    await mkdir(`${file}.d`);
    await writeFile(join(`${file}.d`, '10-persistent.conf'), '[storage]\ntransient_store = false\n');
    expect(defaultStoreOptions({ env, uid: 0 }).transientStore).toBe(false);
    await writeFile(join(`${file}.d`, '10-persistent.conf'), '[storage]\ntransient_store = "yes"\n');
    expect(() => defaultStoreOptions({ env, uid: 0 })).toThrowError(
      expect.objectContaining({
        code: 'ERR_GANTRY_INVALID_CONFIGURATION',
        message: expect.stringContaining(
          '10-persistent.conf: [storage] transient_store must be true or false',
        ),
      }),
    );
  });

  it('names the file and line of a malformed storage.conf', async () => {
    const file = join(directory, 'storage.conf');
    await writeFile(file, '[storage]\ndriver = "vfs"\ngraphroot = /no/quotes\n');
    expect(() => defaultStoreOptions({ env: { CONTAINERS_STORAGE_CONF: file }, uid: 0 })).toThrowError(
      expect.objectContaining({
        code: 'ERR_GANTRY_INVALID_CONFIGURATION',
        message: expect.stringContaining(`${file}:3`),
      }),
    );
  });

  it('refuses a non-string graphroot, naming the file and the key', async () => {
    const file = join(directory, 'storage.conf');
    await writeFile(file, '[storage]\ngraphroot = 3\n');
    expect(() => defaultStoreOptions({ env: { CONTAINERS_STORAGE_CONF: file }, uid: 0 })).toThrowError(
      /storage\.conf: \[storage\] graphroot must be a string/,
    );
  });

  it('uses the root defaults, and the driver of an existing store when none is configured', async () => {
    const missing = join(directory, 'missing.conf');
    const root = defaultStoreOptions({ env: { CONTAINERS_STORAGE_CONF: missing }, uid: 0 });
    expect(root.graphRoot).toBe('/var/lib/containers/storage');
    expect(root.runRoot).toBe('/run/containers/storage');
    expect(root.files).toEqual([]);
    const file = join(directory, 'storage.conf');
    await writeFile(file, `[storage]\ngraphroot = "${directory}/g"\nrunroot = "${directory}/r"\n`);
    await mkdir(join(directory, 'g', 'vfs-images'), { recursive: true });
    expect(defaultStoreOptions({ env: { CONTAINERS_STORAGE_CONF: file }, uid: 0 }).driver).toBe('vfs');
  });

  it('gives a rootless user their own store under XDG_DATA_HOME and XDG_RUNTIME_DIR', () => {
    const options = defaultStoreOptions({
      env: {
        XDG_DATA_HOME: join(directory, 'data'),
        XDG_RUNTIME_DIR: join(directory, 'run'),
        XDG_CONFIG_HOME: join(directory, 'config'),
      },
      uid: 1234,
      home: directory,
    });
    expect(options.graphRoot).toBe(join(directory, 'data', 'containers', 'storage'));
    expect(options.runRoot).toBe(join(directory, 'run', 'containers'));
  });

  it('reads the rootless user file ~/.config/containers/storage.conf', async () => {
    await mkdir(join(directory, '.config', 'containers'), { recursive: true });
    const file = join(directory, '.config', 'containers', 'storage.conf');
    await writeFile(file, `[storage]\ndriver = "vfs"\ngraphroot = "${directory}/mine"\n`);
    const options = defaultStoreOptions({
      env: { XDG_RUNTIME_DIR: '/run/user/1234' },
      uid: 1234,
      home: directory,
    });
    expect(options).toMatchObject({
      driver: 'vfs',
      graphRoot: join(directory, 'mine'),
      runRoot: '/run/user/1234/containers',
      files: [file],
    });
  });
});
