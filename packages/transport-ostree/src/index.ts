/**
 * `@gantry/transport-ostree`: the `ostree:IMAGE[@/absolute/repo/path]` transport (images stored in an
 * OSTree repository in containers/image's layout).
 *
 * Importing this package registers nothing: add `ostreeTransport` to a `TransportRegistry`.
 */
import { ostreeTransport } from './transport.js';

export { type CommitObject, parseCommit, serializeCommit } from './gvariant.js';
export {
  blobBranch,
  defaultOstreeRepository,
  encodeOstreeRef,
  OstreeImageReference,
} from './reference.js';
export { OstreeRepository } from './repository.js';
export { createOstreeTransport, type OstreeTransport, ostreeTransport } from './transport.js';

export default ostreeTransport;
