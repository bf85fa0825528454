import { UsageError } from '../args.js';
import type { CommandContext, CommandDefinition } from '../context.js';
import {
  type CompletionModel,
  type CompletionShell,
  completionScript,
  completionShells,
} from '../shell-completion.js';

/**
 * `gantry completion bash|zsh|fish`: prints the shell's completion script, generated from `model()`
 * (the CLI's commands and global flags; a function, as the command is one of those commands).
 */
export function createCompletionCommand(model: () => CompletionModel): CommandDefinition {
  return {
    name: 'completion',
    use: 'completion bash|zsh|fish',
    short: 'Print a shell completion script',
    long: `Print the completion script of a shell, for gantry's commands and flags.

bash: source <(gantry completion bash), or save it as ~/.local/share/bash-completion/completions/gantry
zsh:  save it as _gantry in a directory of $fpath, or source <(gantry completion zsh)
fish: gantry completion fish > ~/.config/fish/completions/gantry.fish`,
    examples: '  gantry completion bash > ~/.local/share/bash-completion/completions/gantry',
    flags: [],
    completionWords: completionShells,
    async run(context: CommandContext): Promise<void> {
      const [shell, ...extra] = context.positionals;
      if (shell === undefined || extra.length > 0) {
        throw new UsageError('Exactly one argument expected: bash, zsh or fish');
      }
      if (!(completionShells as readonly string[]).includes(shell)) {
        throw new UsageError(`unsupported shell "${shell}": use bash, zsh or fish`);
      }
      context.print(completionScript(shell as CompletionShell, model()));
    },
  };
}
