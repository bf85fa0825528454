/**
 * `gantry-transport-sif`: the `sif:path` transport (read-only). A Singularity/Apptainer SIF file is read
 * as a one-layer OCI image, as skopeo's `sif:` transport reads it: the SIF's squashfs root file system
 * becomes the layer (converted with `unsquashfs` and GNU `tar` under `fakeroot`), and its definition
 * file's `%environment` and `%runscript` become the command.
 *
 * Installed beside the `gantry` command, it is found by its package name (`gantry-transport-*`) and its
 * package.json `"gantry": { "transports": ["sif"] }`. In a program, add `sifTransport` (or one made by
 * `createSifTransport`) to a `TransportRegistry`.
 */
import { sifTransport } from './transport.js';

export { type ConversionTools, defaultConversionTools } from './convert.js';
export { SifImageReference } from './reference.js';
export {
  createSifTransport,
  type SifTransport,
  type SifTransportOptions,
  sifTransport,
  validateSifPolicyConfigurationScope,
} from './transport.js';

export default sifTransport;
