import { describe, expect, it } from 'vitest';
import { imageCommandOf, injectedScriptPath, parseDefinitionFile } from './definition-file.js';

describe('parseDefinitionFile', () => {
  it('keeps the non-comment lines of %environment and every line of %runscript, trimmed', () => {
    const sections = parseDefinitionFile(
      [
        'Bootstrap: docker',
        'From: busybox',
        '%post',
        '  echo built',
        '%environment',
        '  export A=1',
        '',
        '  # a comment',
        '\texport B="two words"\r',
        '  %runscript  ',
        '  echo run "$@"',
        '',
        '%labels',
        '  Author me',
      ].join('\n'),
    );
    expect(sections).toEqual({
      environment: ['export A=1', 'export B="two words"'],
      runscript: ['echo run "$@"', ''],
    });
  });

  it('ends a section at any line starting with %, and ignores sections it does not know', () => {
    expect(parseDefinitionFile('%runscript\necho a\n%test\necho t\n%environment\nexport X=1')).toEqual({
      environment: ['export X=1'],
      runscript: ['echo a'],
    });
  });
});

describe('imageCommandOf', () => {
  it('is bash without a definition file or without the two sections', () => {
    expect(imageCommandOf(undefined)).toEqual({ command: 'bash' });
    expect(imageCommandOf(parseDefinitionFile('Bootstrap: docker\nFrom: busybox:1.33.1\n'))).toEqual({
      command: 'bash',
    });
  });

  it('is the injected script, environment first then run script, when either has content', () => {
    expect(imageCommandOf(parseDefinitionFile('%environment\nexport A=1\n%runscript\necho hi\n'))).toEqual({
      command: injectedScriptPath,
      injectedScript: '#!/bin/bash\nexport A=1\necho hi\n',
    });
    expect(imageCommandOf({ environment: [], runscript: ['exec app'] }).injectedScript).toBe(
      '#!/bin/bash\n\nexec app\n',
    );
  });
});
