/**
 * Hostile references: property-based tests (fast-check, fixed seeds) over the reference grammar of every
 * transport, and a bounded fuzz run for crashes and hangs.
 *
 * - Generated valid references parse, and what they print (`stringWithinTransport`) parses to itself.
 * - Generated invalid references throw a GantryError `ERR_GANTRY_INVALID_REFERENCE` whose message names
 *   the input, never anything else.
 * - Arbitrary strings (structural characters, any Unicode, long repetitions built to make a backtracking
 *   regular expression explode) either parse (and then round-trip) or throw that GantryError, each parse
 *   within a time bound.
 * - At the command line, invalid references exit 1 with one fatal line and no stack trace.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ErrorCodes, isGantryError, type Transport } from '@gantry/core';
import { recordOutcome } from '@gantry/core/testing';
import containersStorageTransport from '@gantry/transport-containers-storage';
import dirTransport from '@gantry/transport-dir';
import dockerTransport from '@gantry/transport-docker';
import dockerArchiveTransport from '@gantry/transport-docker-archive';
import dockerDaemonTransport from '@gantry/transport-docker-daemon';
import ociTransport from '@gantry/transport-oci';
import ociArchiveTransport from '@gantry/transport-oci-archive';
import ostreeTransport from '@gantry/transport-ostree';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { runGantry } from '../../test-support/run.js';

const testFile = 'apps/cli/src/reliability/hostile/references.test.ts';
const seed = 20_261_205;
const propertyRuns = 300;
const fuzzRuns = 1500;
/**
 * A parse taking longer than this is a hang (catastrophic backtracking: on these 20 000-character inputs
 * it would take seconds to years). A slow parse is timed again, and the fastest of three counts, so a
 * pause of a loaded machine is not taken for one.
 */
const parseTimeBoundMs = 500;

const workDirectory = mkdtempSync(join(tmpdir(), 'gantry-hostile-references-'));
const existingDirectory = join(workDirectory, 'existing');
mkdirSync(existingDirectory);
afterAll(() => rmSync(workDirectory, { recursive: true, force: true }));

// ---- the docker reference grammar (distribution/reference) ----
const alphanumeric = fc.stringMatching(/^[a-z0-9]{1,6}$/);
const separator = fc.constantFrom('.', '_', '__', '-', '---');
const pathComponent = fc
  .tuple(alphanumeric, fc.array(fc.tuple(separator, alphanumeric), { maxLength: 2 }))
  .map(([first, rest]) => first + rest.map(([sep, part]) => sep + part).join(''));
const repositoryPath = fc
  .array(pathComponent, { minLength: 1, maxLength: 3 })
  .map((parts) => parts.join('/'))
  // A first component with a "." or ":" (or "localhost") would be read as a domain; keep it a path.
  .map((path) => (/^[^/]*[.:]|^localhost(?:\/|$)/.test(path) ? `library/${path}` : path));
const domain = fc.constantFrom(
  'localhost:5000',
  'registry.example.com',
  'Registry.Example.COM:443',
  '127.0.0.1:5000',
  '[::1]:5000',
  'quay.io',
  'docker.io',
);
const tag = fc.stringMatching(/^\w[\w.-]{0,24}$/);
const sha256Hex = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((bytes) => Buffer.from(bytes).toString('hex'));
const digest = sha256Hex.map((hex) => `sha256:${hex}`);
const name = fc
  .tuple(fc.option(domain, { nil: undefined }), repositoryPath)
  .map(([host, path]) => (host === undefined ? path : `${host}/${path}`));
const nameWithTagOrDigest = fc.oneof(
  name,
  fc.tuple(name, tag).map(([n, t]) => `${n}:${t}`),
  fc.tuple(name, digest).map(([n, d]) => `${n}@${d}`),
);
const nameWithTagAndOrDigest = fc.oneof(
  nameWithTagOrDigest,
  fc.tuple(name, tag, digest).map(([n, t, d]) => `${n}:${t}@${d}`),
);

/** Names the grammar refuses: each with the reason it must be refused. */
const invalidDockerName = fc.oneof(
  fc.tuple(repositoryPath, fc.stringMatching(/^[A-Z]{1,4}$/)).map(([p, upper]) => `${p}${upper}`),
  fc.tuple(name, fc.stringMatching(/^[.-][\w.-]{0,10}$/)).map(([n, t]) => `${n}:${t}`),
  fc.tuple(name, fc.stringMatching(/^\w{129,140}$/)).map(([n, t]) => `${n}:${t}`),
  fc.tuple(name, fc.stringMatching(/^[a-f0-9]{1,63}$/)).map(([n, hex]) => `${n}@sha256:${hex}`),
  fc.tuple(name, sha256Hex).map(([n, hex]) => `${n}@md5:${hex}`),
  fc.tuple(name, sha256Hex).map(([n, hex]) => `${n}@sha256:${hex.toUpperCase()}G`),
  fc.tuple(pathComponent, pathComponent).map(([a, b]) => `${a}//${b}`),
  pathComponent.map((p) => `${p}/`),
  pathComponent.map((p) => `-${p}`),
  fc.constant(`${'a/'.repeat(130)}a`),
  fc.stringMatching(/^[a-z]{1,5}[!#$%^&*()= ][a-z]{1,5}$/),
);

// ---- paths ----
/** A file name without '/', ':' or NUL (any other Unicode). */
const fileName = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 16 })
  .filter((text) => !/[/:\0]/.test(text) && text !== '.' && text !== '..');
const pathInExistingDirectory = fileName.map((file) => join(existingDirectory, file));
const relativePath = fc.constantFrom('', '.', 'relative-layout', './relative-layout', '..');

// ---- OCI image names (org.opencontainers.image.ref.name) ----
const ociImageName = fc.stringMatching(
  /^[A-Za-z0-9]{1,5}(?:(?:[-._:@+]|--)[A-Za-z0-9]{1,5}){0,3}(?:\/[A-Za-z0-9]{1,5}(?:[-._][A-Za-z0-9]{1,5})?){0,2}$/,
);
const invalidOciImageName = fc.oneof(
  fc.constantFrom(
    '-x',
    'x-',
    'a//b',
    'a/',
    '/a',
    'a..b',
    'a b',
    'é',
    '@-1',
    '@x',
    '@1.5',
    '@99999999999999999999',
  ),
  ociImageName.map((n) => `${n}/`),
  ociImageName.map((n) => `${n}!`),
);

interface TransportGrammar {
  transport: Transport;
  valid: fc.Arbitrary<string>;
  invalid: fc.Arbitrary<string>;
}

const storeRoots = `vfs@${join(workDirectory, 'graph')}+${join(workDirectory, 'run')}`;
const ostreeRepository = join(workDirectory, 'ostree-repo');
mkdirSync(ostreeRepository);
const colonDirectory = join(workDirectory, 'a:b');
mkdirSync(colonDirectory);

const grammars: TransportGrammar[] = [
  {
    transport: dockerTransport,
    valid: nameWithTagOrDigest.map((n) => `//${n}`),
    invalid: fc.oneof(
      invalidDockerName.map((n) => `//${n}`),
      nameWithTagOrDigest, // no leading "//"
      fc.tuple(name, tag, digest).map(([n, t, d]) => `//${n}:${t}@${d}`), // both tag and digest
    ),
  },
  {
    transport: dockerArchiveTransport,
    valid: fc.oneof(
      pathInExistingDirectory,
      fc
        .tuple(
          pathInExistingDirectory,
          fc.oneof(
            name,
            fc.tuple(name, tag).map(([n, t]) => `${n}:${t}`),
          ),
        )
        .map(([path, n]) => `${path}:${n}`),
      fc.tuple(pathInExistingDirectory, fc.nat(1000)).map(([path, index]) => `${path}:@${index}`),
    ),
    invalid: fc.oneof(
      fc.constant(''),
      fc.tuple(pathInExistingDirectory, invalidDockerName).map(([path, n]) => `${path}:${n}`),
      fc.tuple(pathInExistingDirectory, name, digest).map(([path, n, d]) => `${path}:${n}@${d}`),
      fc
        .tuple(pathInExistingDirectory, fc.constantFrom('@x', '@-1', '@1.5', '@', '@99999999999999999999'))
        .map(([path, index]) => `${path}:${index}`),
    ),
  },
  {
    transport: dockerDaemonTransport,
    valid: fc.oneof(
      fc.tuple(name, tag).map(([n, t]) => `${n}:${t}`),
      fc.tuple(name, digest).map(([n, d]) => `${n}@${d}`),
      digest,
    ),
    invalid: fc.oneof(
      invalidDockerName,
      name, // neither tag nor digest
      fc.tuple(name, tag, digest).map(([n, t, d]) => `${n}:${t}@${d}`),
      fc.stringMatching(/^sha256:[a-f0-9]{1,63}$/),
    ),
  },
  {
    transport: ociTransport,
    valid: fc.oneof(
      pathInExistingDirectory,
      relativePath,
      fc.tuple(pathInExistingDirectory, ociImageName).map(([path, n]) => `${path}:${n}`),
      fc.tuple(pathInExistingDirectory, fc.nat(1000)).map(([path, index]) => `${path}:@${index}`),
    ),
    invalid: fc.oneof(
      fc.tuple(pathInExistingDirectory, invalidOciImageName).map(([path, n]) => `${path}:${n}`),
      fileName.map((file) => join(workDirectory, 'missing-parent', file, 'layout')),
    ),
  },
  {
    transport: ociArchiveTransport,
    valid: fc.oneof(
      pathInExistingDirectory,
      fc.tuple(pathInExistingDirectory, ociImageName).map(([path, n]) => `${path}:${n}`),
      fc.tuple(pathInExistingDirectory, fc.nat(1000)).map(([path, index]) => `${path}:@${index}`),
    ),
    invalid: fc.oneof(
      fc.tuple(pathInExistingDirectory, invalidOciImageName).map(([path, n]) => `${path}:${n}`),
      fileName.map((file) => join(workDirectory, 'missing-parent', file, 'archive.tar')),
    ),
  },
  {
    transport: dirTransport,
    valid: fc.oneof(pathInExistingDirectory, relativePath),
    invalid: fileName.map((file) => join(workDirectory, 'missing-parent', file, 'dir')),
  },
  {
    transport: containersStorageTransport,
    valid: fc.oneof(
      fc
        .tuple(nameWithTagAndOrDigest, fc.option(sha256Hex, { nil: undefined }))
        .map(([n, id]) => `[${storeRoots}]${n}${id === undefined ? '' : `@${id}`}`),
      sha256Hex.map((id) => `[${storeRoots}]@${id}`),
    ),
    invalid: fc.oneof(
      invalidDockerName.map((n) => `[${storeRoots}]${n}`),
      name.map((n) => `[relative/graph]${n}`),
      name.map((n) => `[vfs@${workDirectory}+relative/run]${n}`),
      name.map((n) => `[${storeRoots}${n}`),
      fc.stringMatching(/^[a-f0-9]{65,70}$/).map((id) => `[${storeRoots}]@${id}`),
    ),
  },
  {
    transport: ostreeTransport,
    valid: fc
      .tuple(
        fc.oneof(
          name,
          fc.tuple(name, tag).map(([n, t]) => `${n}:${t}`),
        ),
        fc.boolean(),
      )
      .map(([n, withRepository]) => (withRepository ? `${n}@${ostreeRepository}` : n)),
    invalid: fc.oneof(
      invalidDockerName.filter((n) => !n.includes('@')),
      name.map((n) => `${n}@${colonDirectory}`),
      name.map((n) => `${n}@${join(workDirectory, 'missing-parent', 'x', 'repo')}`),
    ),
  },
];

/** Parses, timing the call; returns the reference or the thrown value. */
function timedParse(
  transport: Transport,
  input: string,
): { ok: true; text: string; ms: number } | { ok: false; error: unknown; ms: number } {
  const start = performance.now();
  try {
    const text = transport.parseReference(input).stringWithinTransport();
    return { ok: true, text, ms: performance.now() - start };
  } catch (error) {
    return { ok: false, error, ms: performance.now() - start };
  }
}

/** Asserts `error` is the GantryError an invalid reference must give. */
function expectInvalidReferenceError(error: unknown, input: string): void {
  if (!isGantryError(error)) {
    throw new Error(`parsing ${JSON.stringify(input)} threw a non-Gantry error: ${String(error)}`, {
      cause: error,
    });
  }
  expect(error.code).toBe(ErrorCodes.InvalidReference);
  expect(error.message.length).toBeGreaterThan(10);
}

/** A printed reference must parse to itself. */
function expectStableRoundTrip(transport: Transport, input: string, printed: string): void {
  const again = timedParse(transport, printed);
  if (!again.ok) {
    throw new Error(
      `${transport.name}:${JSON.stringify(input)} printed ${JSON.stringify(printed)}, which does not parse: ${String(again.error)}`,
    );
  }
  expect(again.text, `${transport.name}: ${JSON.stringify(input)} → ${JSON.stringify(printed)}`).toBe(
    printed,
  );
}

describe.each(grammars)('$transport.name references', ({ transport, valid, invalid }) => {
  test('generated valid references parse and round-trip (parse → string → parse)', () => {
    fc.assert(
      fc.property(valid, (input) => {
        const parsed = timedParse(transport, input);
        if (!parsed.ok) {
          throw new Error(
            `valid ${transport.name} reference ${JSON.stringify(input)} was refused: ${String(parsed.error)}`,
          );
        }
        expectStableRoundTrip(transport, input, parsed.text);
      }),
      { seed, numRuns: propertyRuns },
    );
    recordOutcome({
      suite: 'hostile-input',
      case: 'generated valid references (property test)',
      transport: transport.name,
      outcome: `${propertyRuns} parsed; printed form parses to itself`,
      ok: true,
      testFile,
    });
  });

  test('generated invalid references throw ERR_GANTRY_INVALID_REFERENCE, nothing else', () => {
    fc.assert(
      fc.property(invalid, (input) => {
        const parsed = timedParse(transport, input);
        if (parsed.ok) {
          throw new Error(
            `invalid ${transport.name} reference ${JSON.stringify(input)} was accepted as ${parsed.text}`,
          );
        }
        expectInvalidReferenceError(parsed.error, input);
      }),
      { seed, numRuns: propertyRuns },
    );
    recordOutcome({
      suite: 'hostile-input',
      case: 'generated invalid references (property test)',
      transport: transport.name,
      outcome: `${propertyRuns} refused with ERR_GANTRY_INVALID_REFERENCE`,
      ok: true,
      testFile,
    });
  });

  test('fuzz: arbitrary and pathological strings never crash or hang the parser', () => {
    const structural = fc.constantFrom(...'aZ09:/@._-+[]%$ \\é\u0000\u202e'.split(''), '//', 'sha256:', '..');
    const repeated = fc
      .tuple(
        fc.constantFrom('a-', 'a.', 'a_', 'a__', 'a--', 'aA', '0.', 'a/', 'a:', '-', '.', 'a@', ':@'),
        fc.integer({ min: 500, max: 20_000 }),
        fc.constantFrom('', '!', ':', 'A', '@', '/'),
      )
      .map(([unit, count, end]) => unit.repeat(count) + end);
    const arbitraryInput = fc.oneof(
      fc.string({ unit: structural, maxLength: 80 }),
      fc.string({ unit: 'binary', maxLength: 200 }),
      repeated,
      fc
        .tuple(fc.constantFrom('//', '', `[${storeRoots}]`, `${existingDirectory}/f:`), repeated)
        .map(([p, r]) => p + r),
    );
    fc.assert(
      fc.property(arbitraryInput, (input) => {
        const parsed = timedParse(transport, input);
        if (parsed.ms >= parseTimeBoundMs) {
          for (let again = 0; again < 2; again++)
            parsed.ms = Math.min(parsed.ms, timedParse(transport, input).ms);
        }
        expect(parsed.ms, `parsing a ${input.length}-character ${transport.name} reference`).toBeLessThan(
          parseTimeBoundMs,
        );
        if (parsed.ok) expectStableRoundTrip(transport, input, parsed.text);
        else expectInvalidReferenceError(parsed.error, input);
      }),
      { seed, numRuns: fuzzRuns, interruptAfterTimeLimit: 20_000 },
    );
    recordOutcome({
      suite: 'hostile-input',
      case: 'fuzzed references (arbitrary Unicode, 20 000-character repetitions)',
      transport: transport.name,
      outcome: `no crash or hang; every parse under ${parseTimeBoundMs} ms`,
      ok: true,
      testFile,
    });
  });
});

describe('invalid references at the command line', () => {
  const samples: Array<[string, string]> = [
    ['docker', 'docker://library/UPPER:tag'],
    ['docker', 'docker://busybox:tag@sha256:abc'],
    ['docker-archive', `docker-archive:${existingDirectory}/a.tar:@-1`],
    ['docker-daemon', 'docker-daemon:busybox'],
    ['oci', `oci:${existingDirectory}:a//b`],
    ['oci-archive', `oci-archive:${existingDirectory}/a.tar:@x`],
    ['dir', `dir:${workDirectory}/missing-parent/x/y`],
    ['containers-storage', 'containers-storage:[relative]busybox'],
    ['ostree', `ostree:Busybox@${ostreeRepository}`],
  ];
  test.each(samples)(
    '%s: %s exits 1 with one fatal line, no stack trace',
    async (transportName, reference) => {
      const result = await runGantry(['--debug', 'inspect', '--raw', reference]);
      expect(result.code).toBe(1);
      expect(result.stdout.length).toBe(0);
      expect(result.stderr).toMatch(
        /level=fatal msg="Error parsing image name .*(?:[Ii]nvalid|must|neither|does not)/,
      );
      expect(result.stderr.match(/level=fatal/g)).toHaveLength(1);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      recordOutcome({
        suite: 'hostile-input',
        case: 'invalid reference on the command line',
        transport: transportName,
        outcome: 'exit 1, one fatal line naming the reference, no stack trace',
        ok: true,
        testFile,
      });
    },
  );
});
