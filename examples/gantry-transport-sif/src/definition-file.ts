/**
 * What skopeo takes from a SIF's definition file (the `Def.FILE` object, the recipe `singularity build`
 * or `apptainer build` ran): the lines of its `%environment` and `%runscript` sections. When either has
 * content they become a shell script added to the image at `/podman/runscript`, which is the image's
 * command; otherwise the command is `bash`. Everything else in the image (`/.singularity.d` with its
 * environment scripts and run script, the `/singularity` link) comes from the SIF's root file system
 * unchanged: skopeo does not interpret it, and neither does this transport.
 */

/** Where the script made from `%environment` and `%runscript` is written in the image. */
export const injectedScriptPath = '/podman/runscript';

/** The command of an image whose definition file has no `%environment` or `%runscript` content. */
export const defaultCommand = 'bash';

export interface DefinitionFileSections {
  /** Non-empty lines of `%environment` that are not comments, trimmed. */
  environment: string[];
  /** Every line of `%runscript`, trimmed. */
  runscript: string[];
}

/**
 * The `%environment` and `%runscript` sections of a definition file. A section starts at a line that is
 * exactly `%environment` or `%runscript` once trimmed and ends at the next line starting with `%`.
 * Lines are split as Go's `bufio.Scanner` does (`\n`, a trailing `\r` dropped) and trimmed of white space.
 */
export function parseDefinitionFile(text: string): DefinitionFileSections {
  const environment: string[] = [];
  const runscript: string[] = [];
  let state: 'other' | 'environment' | 'runscript' = 'other';
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  for (const rawLine of lines) {
    const line = rawLine.replace(/\r$/, '').trim();
    if (line === '%environment') state = 'environment';
    else if (line === '%runscript') state = 'runscript';
    else if (line.startsWith('%')) state = 'other';
    else if (state === 'environment') {
      if (line !== '' && !line.startsWith('#')) environment.push(line);
    } else if (state === 'runscript') runscript.push(line);
  }
  return { environment, runscript };
}

/** The image's command and, when the definition file asks for one, the script to add at `/podman/runscript`. */
export interface ImageCommand {
  command: string;
  injectedScript?: string;
}

/** The command skopeo gives the image for these sections (see the module comment). */
export function imageCommandOf(sections: DefinitionFileSections | undefined): ImageCommand {
  if (!sections || (sections.environment.length === 0 && sections.runscript.length === 0)) {
    return { command: defaultCommand };
  }
  return {
    command: injectedScriptPath,
    injectedScript: `#!/bin/bash\n${sections.environment.join('\n')}\n${sections.runscript.join('\n')}\n`,
  };
}
