/**
 * Flags shared by commands that open images (skopeo's imageFlags / retryFlags), and their mapping to
 * a `TransportContext`. Flags that only concern transports Gantry does not have yet (registries,
 * daemons, authentication, TLS) are recognised but rejected with an explanation.
 */
import type { TransportContext } from '@gantry/core';
import type { FlagSpec, FlagValue } from './args.js';
import type { GlobalOptions } from './context.js';

const dockerOnly = 'it applies to the docker transports, which are not available in gantry yet';

/** skopeo's image flags with `prefix` ('' for inspect, 'src-' / 'dest-' for copy). */
export function imageFlagSpecs(prefix: '' | 'src-' | 'dest-'): FlagSpec[] {
  const flags: FlagSpec[] = [
    {
      name: `${prefix}shared-blob-dir`,
      kind: 'string',
      valueName: 'DIRECTORY',
      description: 'DIRECTORY to use to share blobs across OCI repositories',
    },
    {
      name: `${prefix}authfile`,
      kind: 'string',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: skopeo's help text names the variable literally.
      description: 'path of the authentication file. Default is ${XDG_RUNTIME_DIR}/containers/auth.json',
      unsupported: dockerOnly,
    },
    {
      name: `${prefix}cert-dir`,
      kind: 'string',
      valueName: 'PATH',
      description: 'use certificates at PATH (*.crt, *.cert, *.key) to connect to the registry or daemon',
      unsupported: dockerOnly,
    },
    {
      name: `${prefix}creds`,
      kind: 'string',
      valueName: 'USERNAME[:PASSWORD]',
      description: 'Use USERNAME[:PASSWORD] for accessing the registry',
      unsupported: dockerOnly,
    },
    {
      name: `${prefix}daemon-host`,
      kind: 'string',
      valueName: 'HOST',
      description: 'use docker daemon host at HOST (docker-daemon: only)',
      unsupported: dockerOnly,
    },
    {
      name: `${prefix}no-creds`,
      kind: 'bool',
      description: 'Access the registry anonymously',
      unsupported: dockerOnly,
    },
    {
      name: `${prefix}password`,
      kind: 'string',
      description: 'Password for accessing the registry',
      unsupported: dockerOnly,
    },
    {
      name: `${prefix}registry-token`,
      kind: 'string',
      description: 'Provide a Bearer token for accessing the registry',
      unsupported: dockerOnly,
    },
    {
      name: `${prefix}tls-verify`,
      kind: 'bool',
      description: 'require HTTPS and verify certificates when talking to the container registry or daemon',
      unsupported: dockerOnly,
    },
    {
      name: `${prefix}username`,
      kind: 'string',
      description: 'Username for accessing the registry',
      unsupported: dockerOnly,
    },
  ];
  return flags;
}

/** `--retry-times` and `--retry-delay`. */
export const retryFlagSpecs: FlagSpec[] = [
  { name: 'retry-times', kind: 'uint', description: 'the number of times to possibly retry' },
  {
    name: 'retry-delay',
    kind: 'duration',
    description: 'Fixed delay between retries (default: exponential backoff)',
  },
];

/** The TransportContext for one side of an operation. */
export function transportContextFrom(
  global: GlobalOptions,
  flags: Map<string, FlagValue>,
  prefix: '' | 'src-' | 'dest-',
  signal: AbortSignal | undefined,
): TransportContext {
  const context: TransportContext = { platform: { ...global.platform } };
  if (signal) context.signal = signal;
  if (global.temporaryDirectory) context.temporaryDirectory = global.temporaryDirectory;
  if (global.registriesConfPath) context.registriesConfPath = global.registriesConfPath;
  const shared = flags.get(`${prefix}shared-blob-dir`);
  if (typeof shared === 'string' && shared !== '') context.ociSharedBlobDirectory = shared;
  return context;
}
