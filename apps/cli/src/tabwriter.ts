/**
 * Go's `text/tabwriter` as newer skopeo/podman apply it to `--format` output
 * (`tabwriter.NewWriter(w, 12, 2, 2, ' ', 0)`): tab-terminated cells of consecutive lines form
 * column blocks; each column is padded with spaces to the widest cell plus `padding`, at least
 * `minWidth`. Text without tabs passes through unchanged. Widths count characters (runes), like Go.
 */
export interface TabwriterOptions {
  minWidth: number;
  padding: number;
}

export const reportTabwriterOptions: TabwriterOptions = { minWidth: 12, padding: 2 };

function runeLength(text: string): number {
  return [...text].length;
}

export function alignTabs(text: string, options: TabwriterOptions = reportTabwriterOptions): string {
  if (!text.includes('\t')) return text;
  const endsWithNewline = text.endsWith('\n');
  const lines = (endsWithNewline ? text.slice(0, -1) : text).split('\n').map((line) => line.split('\t'));
  const widths: number[] = [];
  let out = '';

  const writeLines = (from: number, to: number) => {
    for (let index = from; index < to; index++) {
      const cells = lines[index]!;
      cells.forEach((cell, column) => {
        out += cell;
        if (column < cells.length - 1 && column < widths.length)
          out += ' '.repeat(Math.max(0, widths[column]! - runeLength(cell)));
      });
      if (index < lines.length - 1 || endsWithNewline) out += '\n';
    }
  };

  const format = (lineStart: number, lineEnd: number) => {
    const column = widths.length;
    let blockStart = lineStart;
    for (let current = lineStart; current < lineEnd; current++) {
      if (column >= lines[current]!.length - 1) continue;
      writeLines(blockStart, current);
      blockStart = current;
      let width = options.minWidth;
      for (; current < lineEnd; current++) {
        const cells = lines[current]!;
        if (column >= cells.length - 1) break;
        width = Math.max(width, runeLength(cells[column]!) + options.padding);
      }
      widths.push(width);
      format(blockStart, current);
      widths.pop();
      blockStart = current;
      current--;
    }
    writeLines(blockStart, lineEnd);
  };

  format(0, lines.length);
  return out;
}
