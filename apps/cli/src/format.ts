/**
 * `--format` handling shared by commands, as skopeo does it through containers/common's `report`
 * package: `json` / `{{json .}}` (alone) print the indented JSON document; anything else is a Go
 * template, with `\t` / `\n` written literally on the command line turned into tab / newline, and a
 * final newline added when missing; tab-separated output is aligned in columns as newer skopeo's
 * tabwriter does (Debian's skopeo 1.9.3 loses output containing tabs: a bug not reproduced).
 */
import { formatInspectJson } from '@gantry/core';
import { GoTemplate } from './go-template.js';
import type { GoStruct } from './go-values.js';
import { alignTabs } from './tabwriter.js';

const jsonFormatPattern = /^\s*(json|{{\s*json *\.?\s*}})\s*$/;

/** True when `--format` asks for the JSON document (`json`, `{{json .}}`, `{{ json }}`). */
export function isJsonFormat(format: string): boolean {
  return jsonFormatPattern.test(format);
}

/** containers/common's NormalizeFormat. */
export function normalizeFormat(format: string): string {
  let text: string;
  if (format.startsWith('table ')) {
    text = format.replace(/table |\\t|\\n| /g, (match) =>
      match === 'table ' ? '' : match === '\\t' ? '\t' : match === '\\n' ? '\n' : '\t',
    );
  } else {
    text = format.replace(/\\t|\\n/g, (match) => (match === '\\t' ? '\t' : '\n'));
  }
  return text.endsWith('\n') ? text : `${text}\n`;
}

/**
 * The text printed for `value` with `format`: the JSON document (`jsonValue`, core's Go-shaped value)
 * plus a newline, or the template's output over `templateData`.
 */
export function renderFormatted(
  format: string,
  jsonValue: unknown,
  templateData: GoStruct,
  templateName: string,
): string {
  if (format === '' || isJsonFormat(format)) return `${formatInspectJson(jsonValue)}\n`;
  return alignTabs(GoTemplate.parse(normalizeFormat(format), { name: templateName }).execute(templateData));
}
