/**
 * Writing an image into the Docker Engine: `POST /images/load` with a `docker save` archive produced by
 * `@gantry/docker-save-format`'s writer while the copy runs. The request starts when the destination opens and
 * its body is the archive stream itself: nothing is written to a temporary file (except blobs of unknown
 * digest or size, which the writer spools).
 *
 * - The reference must be `name:tag` (as containers/image: an image ID or `name@digest` is refused).
 * - Layers must be uncompressed (`desiredLayerCompression: 'decompress'`); only Docker schema2 manifests;
 *   the image must match the daemon's OS (`mustMatchRuntimeOS`); no signatures, no manifest lists.
 * - `commit()` ends the archive and reads the daemon's JSON message stream; an `error` message there (or a
 *   non-200 status) rejects with a `GantryError` carrying the daemon's message.
 * - `close()` without `commit()` aborts the request: the daemon sees a truncated tar and loads nothing.
 */
import { PassThrough, type Readable } from 'node:stream';
import {
  type BlobInfo,
  type BlobToWrite,
  type Digest,
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageDestinationProperties,
  MediaTypes,
  type OperationOptions,
  type PutBlobOptions,
  parseDigest,
  type ReusedBlob,
  type TransportContext,
  type TryReusingBlobOptions,
  throwIfAborted,
} from '@gantry/core';
import { createDockerArchiveWriter, type DockerArchiveWriter } from '@gantry/docker-save-format';
import { DockerEngineClient, dockerHostOf, dockerTlsSettingsOf, type EngineResponse } from './client.js';
import type { DockerDaemonReference } from './reference.js';

const properties: ImageDestinationProperties = Object.freeze({
  supportedManifestMimeTypes: Object.freeze([MediaTypes.DockerManifest]),
  desiredLayerCompression: 'decompress',
  acceptsForeignLayerURLs: false,
  mustMatchRuntimeOS: true,
  supportsSignatures: false,
  hasThreadSafePutBlob: false,
  ignoresEmbeddedDockerReference: false,
});

/** Reads the JSON message stream of `/images/load`; throws on an `error` message. */
async function readLoadMessages(response: EngineResponse, description: string): Promise<string[]> {
  let text = '';
  for await (const chunk of response.body) {
    if (text.length < 1 << 20) text += Buffer.from(chunk as Uint8Array).toString('utf8');
  }
  if (response.statusCode !== 200) {
    let message = text.trim();
    try {
      const parsed = JSON.parse(text) as { message?: unknown };
      if (typeof parsed.message === 'string') message = parsed.message;
    } catch {
      // not JSON
    }
    throw new GantryError(
      ErrorCodes.Transient,
      `docker daemon refused to load ${description}: status ${response.statusCode}: ${message}`,
    );
  }
  const messages: string[] = [];
  // The stream is concatenated JSON objects (one per line in practice).
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') continue;
    let parsed: { stream?: unknown; error?: unknown; errorDetail?: { message?: unknown } };
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      throw new GantryError(
        ErrorCodes.Transient,
        `unexpected answer from the docker daemon loading ${description}: ${line}`,
        {
          cause: error,
        },
      );
    }
    const failure = parsed.errorDetail?.message ?? parsed.error;
    if (failure !== undefined) {
      throw new GantryError(
        ErrorCodes.Transient,
        `docker daemon failed to load ${description}: ${String(failure)}`,
      );
    }
    if (typeof parsed.stream === 'string') messages.push(parsed.stream.trim());
  }
  return messages;
}

class DockerDaemonImageDestination implements ImageDestination {
  readonly reference: DockerDaemonReference;
  readonly properties = properties;
  readonly #client: DockerEngineClient;
  readonly #writer: DockerArchiveWriter;
  readonly #body: PassThrough;
  readonly #requestAbort = new AbortController();
  readonly #response: Promise<EngineResponse>;
  readonly #tag: DockerReference;
  readonly #contextSignal: AbortSignal | undefined;
  #manifestWritten = false;
  #committed = false;
  #closed = false;
  /** The daemon's messages after a successful commit (`Loaded image: …`). */
  loadMessages: string[] = [];

  constructor(
    reference: DockerDaemonReference,
    client: DockerEngineClient,
    tag: DockerReference,
    context: TransportContext,
  ) {
    this.reference = reference;
    this.#client = client;
    this.#tag = tag;
    this.#contextSignal = context.signal;
    this.#body = new PassThrough();
    const signals = [this.#requestAbort.signal, context.signal].filter((signal) => signal !== undefined);
    this.#response = client.request('POST', '/images/load?quiet=1', {
      body: this.#body,
      headers: { 'content-type': 'application/x-tar' },
      signal: signals.length === 1 ? signals[0]! : AbortSignal.any(signals),
    });
    // Handled in commit()/close(); avoid an unhandled rejection meanwhile.
    this.#response.catch(() => {});
    this.#writer = createDockerArchiveWriter(this.#body, {
      ...(context.signal ? { signal: context.signal } : {}),
      ...(context.temporaryDirectory ? { temporaryDirectory: context.temporaryDirectory } : {}),
    });
  }

  #begin(options: OperationOptions | undefined): AbortSignal | undefined {
    if (this.#closed || this.#committed) {
      throw new GantryError(
        ErrorCodes.Internal,
        'docker-daemon image destination used after commit() or close()',
      );
    }
    const signals = [this.#contextSignal, options?.signal].filter((signal) => signal !== undefined);
    const signal = signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
    throwIfAborted(signal);
    return signal;
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    const signal = this.#begin(options);
    const stored = await this.#writer.putBlob(
      stream,
      { ...(info.digest ? { digest: info.digest } : {}), size: info.size },
      { isConfig: options.isConfig, ...(signal ? { signal } : {}) },
    );
    return { ...stored, ...(info.mediaType ? { mediaType: info.mediaType } : {}) };
  }

  /** Reuses only blobs already written into this archive (the daemon's layer store is not consulted). */
  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    this.#begin(options);
    const existing = this.#writer.hasBlob(info.digest);
    return existing ? { reused: true, blob: { ...existing } } : { reused: false };
  }

  async putManifest(
    manifest: Uint8Array,
    mediaType: string,
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#begin(options);
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'Manifest lists are not supported for docker-daemon: destinations',
      );
    }
    let parsed: {
      schemaVersion?: unknown;
      mediaType?: unknown;
      config?: { digest?: unknown };
      layers?: Array<{ digest?: unknown }>;
    };
    try {
      parsed = JSON.parse(Buffer.from(manifest).toString('utf8'));
    } catch (error) {
      throw new GantryError(ErrorCodes.InvalidManifest, `parsing manifest: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (parsed.schemaVersion !== 2 || parsed.mediaType !== MediaTypes.DockerManifest) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `Unsupported manifest type ${mediaType || String(parsed.mediaType)}, need a Docker schema 2 manifest`,
      );
    }
    if (this.#manifestWritten) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'a docker-daemon: destination holds one image; a manifest was already written',
      );
    }
    let configDigest: Digest;
    let layerDigests: Digest[];
    try {
      configDigest = parseDigest(String(parsed.config?.digest));
      layerDigests = (parsed.layers ?? []).map((layer) => parseDigest(String(layer.digest)));
    } catch (error) {
      throw new GantryError(ErrorCodes.InvalidManifest, `invalid manifest: ${(error as Error).message}`, {
        cause: error,
      });
    }
    await this.#writer.addImage({ configDigest, layerDigests, repoTags: [this.#tag] });
    this.#manifestWritten = true;
  }

  async putSignatures(
    signatures: Uint8Array[],
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#begin(options);
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'Manifest lists are not supported for docker-daemon: destinations',
      );
    }
    if (signatures.length > 0) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'Storing signatures for docker-daemon: destinations is not supported',
      );
    }
  }

  async commit(options?: OperationOptions): Promise<void> {
    this.#begin(options);
    if (!this.#manifestWritten) {
      throw new GantryError(ErrorCodes.Internal, 'docker-daemon: commit() before putManifest()');
    }
    this.#committed = true;
    await this.#writer.finish();
    const response = await this.#response;
    this.loadMessages = await readLoadMessages(
      response,
      `docker-daemon:${this.reference.stringWithinTransport()}`,
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#committed) {
      this.#writer.abort(
        new GantryError(ErrorCodes.Aborted, 'docker-daemon destination closed without commit'),
      );
      this.#requestAbort.abort(
        new GantryError(ErrorCodes.Aborted, 'docker-daemon destination closed without commit'),
      );
      try {
        const response = await this.#response;
        response.body.destroy();
      } catch {
        // aborted, as intended
      }
      await this.#client.destroy();
      return;
    }
    await this.#client.close();
  }
}

/**
 * Opens a destination loading into the daemon as `reference` (`name:tag` only). Contacts the daemon at once
 * (`ERR_GANTRY_TRANSIENT` naming the address when it cannot be reached).
 */
export async function openDockerDaemonImageDestination(
  reference: DockerDaemonReference,
  context: TransportContext,
): Promise<ImageDestination> {
  throwIfAborted(context.signal);
  const tag = reference.name;
  if (tag === undefined || tag.tag === undefined || tag.digest !== undefined) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid destination docker-daemon:${reference.stringWithinTransport()}: a destination must be a name:tag`,
    );
  }
  const client = new DockerEngineClient(dockerHostOf(context), dockerTlsSettingsOf(context));
  try {
    await client.apiVersion(context.signal);
  } catch (error) {
    await client.close();
    throw error;
  }
  return new DockerDaemonImageDestination(reference, client, tag, context);
}
