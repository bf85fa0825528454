/**
 * `containers-storage:` references, with containers/image's rules (storage/storage_transport.go,
 * storage_reference.go):
 *
 * ```
 * containers-storage:[store]name[:tag][@digest][@imageID]
 * containers-storage:[store]@imageID      containers-storage:[store]imageID-or-prefix
 * store = [graphroot] | [driver@graphroot] | [driver@graphroot+runroot] | [driver@graphroot+runroot:opt,opt]
 * ```
 *
 * - Without `[store]` the default store is used (storage.conf, see storage-conf.ts); with it, missing
 *   parts are filled from the defaults and graph/run roots must be absolute.
 * - Names are normalised (`busybox` → `docker.io/library/busybox`) and get `:latest` when they have
 *   neither tag nor digest.
 * - A trailing `@<64 hex>` is an image ID; a shorter hex string (at least 3 characters) is accepted as an
 *   ID when it prefixes the ID of an image present in the store, and expanded.
 * - `stringWithinTransport()` is `[driver@graphroot+runroot:options]name@id`; the policy identity is
 *   `[driver@graphroot]name@id`, with namespaces `[driver@graphroot]` + each enclosing name, then
 *   `[driver@graphroot]` and `[graphroot]`.
 */
import { isAbsolute } from 'node:path';
import { defaultStoreOptions, driverOfExistingStore } from '@gantry/containers-config';
import {
  type Digest,
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  isNameOnly,
  parseNormalizedNamed,
  type Transport,
  type TransportContext,
  tagNameOnly,
} from '@gantry/core/transport';
import { fullIdPattern } from './ids.js';
import type { ContainersStore, StoreLocation } from './store.js';

const minimumTruncatedIdLength = 3;
const validDigest = /^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/;

function invalid(reference: string, reason: string, cause?: unknown): GantryError {
  return new GantryError(
    ErrorCodes.InvalidReference,
    `Invalid image name "containers-storage:${reference}": ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

/** The `[…]` part of a reference, as written. */
export interface StoreSpecification {
  driver?: string;
  graphRoot?: string;
  runRoot?: string;
  options?: string[];
}

/** Parses `driver@graphroot+runroot:options` (without the brackets). */
export function parseStoreSpecification(specification: string, whole: string): StoreSpecification {
  let rest = specification;
  const result: StoreSpecification = {};
  const at = rest.indexOf('@');
  if (at >= 0) {
    const driver = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (driver === '' || rest === '') throw invalid(whole, 'invalid reference');
    result.driver = driver;
  } else if (rest === '') {
    throw invalid(whole, 'invalid reference');
  }
  const colon = rest.indexOf(':');
  if (colon >= 0) {
    result.options = rest.slice(colon + 1).split(',');
    rest = rest.slice(0, colon);
  }
  const plus = rest.indexOf('+');
  if (plus >= 0) {
    const runRoot = rest.slice(plus + 1);
    if (runRoot !== '') result.runRoot = runRoot;
    rest = rest.slice(0, plus);
  }
  if (rest !== '') result.graphRoot = rest;
  if (result.graphRoot !== undefined && !isAbsolute(result.graphRoot)) {
    throw invalid(whole, 'path name is not absolute');
  }
  if (result.runRoot !== undefined && !isAbsolute(result.runRoot)) {
    throw invalid(whole, 'path name is not absolute');
  }
  return result;
}

/** The store a specification names, with the defaults (storage.conf, environment) filling the gaps. */
export function resolveStoreLocation(specification: StoreSpecification | undefined): StoreLocation {
  const defaults = defaultStoreOptions();
  if (!specification) {
    return {
      driverName: defaults.driver,
      graphRoot: defaults.graphRoot,
      runRoot: defaults.runRoot,
      driverOptions: defaults.driverOptions,
      transientStore: defaults.transientStore,
    };
  }
  const graphRoot = specification.graphRoot ?? defaults.graphRoot;
  const driverName =
    specification.driver ??
    (specification.graphRoot ? driverOfExistingStore(graphRoot) : undefined) ??
    defaults.driver;
  return {
    driverName: driverName === 'overlay2' ? 'overlay' : driverName,
    graphRoot,
    runRoot: specification.runRoot ?? defaults.runRoot,
    driverOptions: specification.options ?? (specification.driver ? [] : defaults.driverOptions),
    // As containers/image: a store named in the reference is opened with what the reference says only,
    // not storage.conf's transient_store.
    transientStore: false,
  };
}

/** What a reference needs from its transport. */
export interface ContainersStorageBackend {
  openStore(location: StoreLocation, context?: TransportContext): Promise<ContainersStore>;
  /** Image IDs present in the store (read without locking), for ID-prefix expansion while parsing. */
  imageIds(location: StoreLocation): string[];
  newImageSource(reference: ContainersStorageReference, context?: TransportContext): Promise<ImageSource>;
  newImageDestination(
    reference: ContainersStorageReference,
    context?: TransportContext,
  ): Promise<ImageDestination>;
  deleteImage(reference: ContainersStorageReference, context?: TransportContext): Promise<void>;
}

/** An image in a containers/storage store: a name (with tag and/or digest), an image ID, or both. */
export class ContainersStorageReference implements ImageReference {
  constructor(
    readonly transport: Transport,
    readonly backend: ContainersStorageBackend,
    readonly location: StoreLocation,
    readonly named: DockerReference | undefined,
    readonly id: string | undefined,
  ) {}

  private storeSpecification(withRunRoot: boolean): string {
    const options =
      withRunRoot && this.location.driverOptions.length ? `:${this.location.driverOptions.join(',')}` : '';
    const runRoot = withRunRoot ? `+${this.location.runRoot}` : '';
    return `[${this.location.driverName}@${this.location.graphRoot}${runRoot}${options}]`;
  }

  stringWithinTransport(): string {
    return `${this.storeSpecification(true)}${this.named ? this.named.toString() : ''}${this.id ? `@${this.id}` : ''}`;
  }

  dockerReference(): DockerReference | undefined {
    return this.named;
  }

  policyConfigurationIdentity(): string {
    return `${this.storeSpecification(false)}${this.named ? this.named.toString() : ''}${this.id ? `@${this.id}` : ''}`;
  }

  policyConfigurationNamespaces(): string[] {
    const store = this.storeSpecification(false);
    const namespaces: string[] = [];
    if (this.named) {
      if (this.id) namespaces.push(store + this.named.toString());
      if (this.named.tag !== undefined && this.named.digest !== undefined) {
        namespaces.push(`${store}${this.named.name}:${this.named.tag}`);
      }
      const components = this.named.name.split('/');
      while (components.length > 0) {
        namespaces.push(store + components.join('/'));
        components.pop();
      }
    }
    namespaces.push(store, `[${this.location.graphRoot}]`);
    return namespaces;
  }

  newImageSource(context?: TransportContext): Promise<ImageSource> {
    return this.backend.newImageSource(this, context);
  }

  newImageDestination(context?: TransportContext): Promise<ImageDestination> {
    return this.backend.newImageDestination(this, context);
  }

  deleteImage(context?: TransportContext): Promise<void> {
    return this.backend.deleteImage(this, context);
  }
}

/** Parses the part after `containers-storage:`. */
export function parseContainersStorageReference(
  transport: Transport,
  backend: ContainersStorageBackend,
  input: string,
): ContainersStorageReference {
  let rest = input;
  let specification: StoreSpecification | undefined;
  if (rest === '') throw invalid(input, 'empty reference');
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 1) throw invalid(input, 'store specifier did not end');
    specification = parseStoreSpecification(rest.slice(1, close), input);
    rest = rest.slice(close + 1);
  }
  const location = resolveStoreLocation(specification);
  let knownIds: string[] | undefined;
  const imageIds = () => {
    knownIds ??= backend.imageIds(location);
    return knownIds;
  };
  const expandPrefix = (prefix: string): string | undefined => {
    if (prefix.length < minimumTruncatedIdLength || !/^[0-9a-f]+$/.test(prefix)) return undefined;
    const matches = imageIds().filter((id) => id.startsWith(prefix));
    return matches.length === 1 ? matches[0] : undefined;
  };

  let id: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const possibleId = rest.slice(at + 1);
    if (possibleId === '') throw invalid(input, 'empty trailing digest or ID');
    if (!validDigest.test(possibleId)) {
      if (fullIdPattern.test(possibleId)) {
        id = possibleId;
      } else {
        const expanded = expandPrefix(possibleId);
        if (!expanded) throw invalid(input, `"${possibleId}" does not look like an image ID or digest`);
        id = expanded;
      }
      rest = rest.slice(0, at);
    }
  }
  if (id === undefined && rest.length >= minimumTruncatedIdLength && !/[@:]/.test(rest)) {
    const expanded = expandPrefix(rest);
    if (expanded) {
      id = expanded;
      rest = '';
    }
  }
  let named: DockerReference | undefined;
  if (rest !== '') {
    try {
      named = tagNameOnly(parseNormalizedNamed(rest));
    } catch (error) {
      throw invalid(input, `parsing named reference "${rest}": ${(error as Error).message}`, error);
    }
    if (isNameOnly(named)) throw invalid(input, 'reference has neither a tag nor a digest');
  }
  if (!named && id === undefined) throw invalid(input, 'invalid reference');
  return new ContainersStorageReference(transport, backend, location, named, id);
}

/** Checks a policy.json scope for this transport, as containers/image's `ValidatePolicyConfigurationScope`. */
export function validatePolicyConfigurationScope(scope: string): void {
  const fail = (reason: string): never => {
    throw new GantryError(
      ErrorCodes.InvalidPolicy,
      `invalid containers-storage policy scope "${scope}": ${reason}`,
    );
  };
  if (!scope.startsWith('[')) fail('it must start with a [store] specification');
  const close = scope.indexOf(']');
  if (close < 1) fail('the store specification does not end');
  const store = scope.slice(1, close);
  const rest = scope.slice(close + 1);
  const at = store.indexOf('@');
  if (at >= 0) {
    const driver = store.slice(0, at);
    const root = store.slice(at + 1);
    if (driver === '' || root === '') fail('invalid store specification');
    if (!isAbsolute(root)) fail('path name is not absolute');
  } else if (store !== '') {
    if (!isAbsolute(store)) fail('path name is not absolute');
  } else {
    fail('invalid store specification');
  }
  if (rest === '') return;
  const fields = rest.split('@');
  if (fields.length === 2) {
    if (!fullIdPattern.test(fields[1]!) && !validDigest.test(fields[1]!)) {
      fail(`${fields[1]} is neither a valid digest nor a valid ID`);
    }
  } else if (fields.length >= 3) {
    if (!validDigest.test(fields[1]!)) fail(`${fields[1]} is not a valid digest`);
    if (!fullIdPattern.test(fields.slice(2).join('@')))
      fail(`${fields.slice(2).join('@')} is not a valid ID`);
  }
}

export type { Digest };
