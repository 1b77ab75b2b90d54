import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO } from '../helpers/cli';

/*
 * scripts/criu-build's choices, with apt replaced by a fake that serves
 * files from a directory (and checks hashes as apt-helper does): which
 * version set-up picks, what it accepts as verified, what it says when
 * nothing fits, and when the installed CRIU must be rebuilt. The real
 * fetch, build and install run in setup-host (docs/criu-build.md).
 */
const SCRIPT = path.join(REPO, 'scripts', 'criu-build');
const tools = ['bash', 'dpkg', 'patch', 'xz', 'tar', 'sha256sum'];
const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const skip = missing.length > 0 ? `needs ${missing.join(', ')} (Debian's dpkg compares versions)` : false;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-criu-build-'));
const fake = path.join(root, 'fake');

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** A source record as `apt-cache showsrc` prints it. */
function showsrc(...versions: string[]): string {
  return versions.map((v) => `Package: criu\nBinary: criu, libcriu2\nVersion: ${v}\nFormat: 3.0 (quilt)\nDirectory: pool/main/c/criu\n`).join('\n');
}

/** What `apt-get source --print-uris criu=V` prints for the files given. */
function printUris(files: { name: string; data: string | Buffer }[]): string {
  return ['Reading package lists...', 'NOTICE: \'criu\' packaging is maintained in the \'Git\' version control system at:', 'Need to get 1 kB of source archives.',
    ...files.map((f) => `'http://deb.example/debian/pool/main/c/criu/${f.name}' ${f.name} ${f.data.length} SHA256:${sha256(f.data)}`)].join('\n') + '\n';
}

function dsc(orig: string, data: Buffer): string {
  return `Format: 3.0 (quilt)\nSource: criu\nChecksums-Sha256:\n ${sha256(data)} ${data.length} ${orig}\n ${'0'.repeat(64)} 100 criu_x.debian.tar.xz\nFiles:\n 00 1 ${orig}\n`;
}

/** A tiny orig tarball of "CRIU" `version`: criu-<version>/{Makefile,criu/page-pipe.c}. */
function origTarball(version: string): Buffer {
  const dir = fs.mkdtempSync(path.join(root, 'tar-'));
  fs.mkdirSync(path.join(dir, `criu-${version}`, 'criu'), { recursive: true });
  fs.writeFileSync(path.join(dir, `criu-${version}`, 'Makefile'), 'criu:\n');
  fs.writeFileSync(path.join(dir, `criu-${version}`, 'criu', 'page-pipe.c'), `/* criu ${version} */\nint pipe_size = 1;\n`);
  const out = path.join(dir, 'orig.tar.xz');
  assert.equal(spawnSync('tar', ['-C', dir, '-cJf', out, `criu-${version}`]).status, 0);
  return fs.readFileSync(out);
}

interface Archive {
  listed: string[];
  /** Per Debian version: the files its index names, and which of them the mirror serves. */
  files: Record<string, { name: string; data: string | Buffer; served: boolean }[]>;
}

/** Lays the fake archive out: showsrc, uris-<version>, served/<file>. */
function publish(archive: Archive): void {
  fs.rmSync(fake, { recursive: true, force: true });
  fs.mkdirSync(path.join(fake, 'served'), { recursive: true });
  fs.writeFileSync(path.join(fake, 'showsrc'), showsrc(...archive.listed));
  for (const [v, files] of Object.entries(archive.files)) {
    fs.writeFileSync(path.join(fake, `uris-${v}`), printUris(files));
    for (const f of files) if (f.served) fs.writeFileSync(path.join(fake, 'served', f.name), f.data);
  }
}

const FAKE_APT = `
ensure_criu_src() { :; }
criu_apt() {
  local tool=\${1##*/}; shift
  case $tool in
    apt-cache) cat "$FAKE/showsrc" ;;
    apt-get) local v=\${*: -1}; v=\${v#criu=}
      cat "$FAKE/uris-$v" 2>/dev/null || { echo "E: Can not find version '$v' of package 'criu'"; return 100; } ;;
    apt-helper) local f=$FAKE/served/\${2##*/}
      if [[ ! -f $f ]]; then echo "Err:1 $2"; echo "  404  Not Found"; echo "E: Failed to fetch $2  404  Not Found"; return 100; fi
      if [[ "SHA256:$(sha256sum <"$f" | cut -d' ' -f1)" != "$4" ]]; then echo "E: Failed to fetch $2  Hash Sum mismatch"; return 100; fi
      cp "$f" "$3" ;;
  esac
}
`;

interface Run { status: number | null; stdout: string; stderr: string }

/** Runs `body` in bash with scripts/criu-build sourced, its work dir, binary, marker and patches under the test root. */
function criuBuild(body: string, opts: { work?: string; patches?: string; fakeApt?: boolean } = {}): Run {
  const work = opts.work ?? path.join(root, 'work');
  const script = [
    `. ${JSON.stringify(SCRIPT)}`,
    `CRIU_WORK=${JSON.stringify(work)}`,
    `CRIU_BIN=${JSON.stringify(path.join(root, 'bin', 'criu'))}`,
    `CRIU_MARKER=${JSON.stringify(path.join(root, 'criu-build'))}`,
    `CRIU_PATCHES=${JSON.stringify(opts.patches ?? path.join(root, 'patches'))}`,
    `FAKE=${JSON.stringify(fake)}`,
    opts.fakeApt === false ? '' : FAKE_APT,
    body,
  ].join('\n');
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(body: string, opts: Parameters<typeof criuBuild>[1] = {}): string {
  const r = criuBuild(body, opts);
  assert.equal(r.status, 0, `bash failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

describe('scripts/criu-build: which CRIU set-up builds', { skip }, () => {
  before(() => fs.mkdirSync(path.join(root, 'patches')));
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('takes the upstream version out of a Debian one', () => {
    const out = ok('for v in 4.2.1-1 1:4.3-2~bpo13+1 4.2 4.2.1-1+deb13u1; do criu_upstream_of "$v"; done');
    assert.deepEqual(out.trim().split('\n'), ['4.2.1', '4.3', '4.2', '4.2.1']);
  });

  it('lists the served versions >= 4.2 newest first (dpkg order, epochs and backports), each once', () => {
    const listed = showsrc('4.1.1-1', '4.2.1-1', '4.2.1-1', '4.10-1', '4.3-1~bpo13+1', '4.3-1', '1:4.2.2-2', '3.17.1-2') +
      '\nPackage: criu-extra\nVersion: 9.9-1\n';
    const out = ok(`criu_candidates <<'EOF'\n${listed}\nEOF`);
    assert.deepEqual(out.trim().split('\n'), ['1:4.2.2-2', '4.10-1', '4.3-1', '4.3-1~bpo13+1', '4.2.1-1']);
    assert.equal(ok("criu_candidates <<<''"), '');
  });

  it("picks the .dsc and the orig tarball out of apt's URIs, with the index's hashes", () => {
    const uris = printUris([{ name: 'criu_4.3-1.dsc', data: 'd' }, { name: 'criu_4.3.orig.tar.xz', data: 'o' },
      { name: 'criu_4.3.orig.tar.xz.asc', data: 's' }, { name: 'criu_4.3-1.debian.tar.xz', data: 'x' }]);
    const out = ok(`criu_source_files 4.3 <<'EOF'\n${uris}EOF`);
    assert.deepEqual(out.trim().split('\n'), [
      `dsc http://deb.example/debian/pool/main/c/criu/criu_4.3-1.dsc criu_4.3-1.dsc SHA256:${sha256('d')}`,
      `orig http://deb.example/debian/pool/main/c/criu/criu_4.3.orig.tar.xz criu_4.3.orig.tar.xz SHA256:${sha256('o')}`,
    ]);
  });

  it('builds the newest served version whose .dsc is served and names its tarball', () => {
    const orig = origTarball('4.3');
    publish({
      listed: ['4.1.1-1', '4.3-1', '4.2.1-1'],
      files: {
        '4.3-1': [{ name: 'criu_4.3-1.dsc', data: dsc('criu_4.3.orig.tar.xz', orig), served: true }, { name: 'criu_4.3.orig.tar.xz', data: orig, served: true },
          { name: 'criu_4.3-1.debian.tar.xz', data: 'x', served: false }],
      },
    });
    const work = path.join(root, 'work-dsc');
    assert.equal(ok('criu_source', { work }).trim(), `4.3-1 criu_4.3.orig.tar.xz ${sha256(orig)} dsc`);
    assert.deepEqual(fs.readdirSync(path.join(work, 'src')).sort(), ['criu_4.3-1.dsc', 'criu_4.3.orig.tar.xz', 'source']);
    // Cached: no apt at all the second time; a damaged tarball is not used.
    assert.equal(ok('criu_apt() { echo "apt used" >&2; return 1; }\ncriu_source', { work }).trim(), `4.3-1 criu_4.3.orig.tar.xz ${sha256(orig)} dsc`);
    fs.appendFileSync(path.join(work, 'src', 'criu_4.3.orig.tar.xz'), 'x');
    assert.equal(criuBuild('criu_cached_source', { work }).status, 1);
  });

  it('accepts a tarball served without its .dsc only with a known checksum, else tries the next version', () => {
    const orig43 = origTarball('4.3');
    const orig429 = origTarball('4.2.9');
    publish({
      listed: ['4.3-1', '4.2.9-1'],
      files: {
        '4.3-1': [{ name: 'criu_4.3-1.dsc', data: dsc('criu_4.3.orig.tar.xz', orig43), served: false }, { name: 'criu_4.3.orig.tar.xz', data: orig43, served: true }],
        '4.2.9-1': [{ name: 'criu_4.2.9-1.dsc', data: dsc('criu_4.2.9.orig.tar.xz', orig429), served: true }, { name: 'criu_4.2.9.orig.tar.xz', data: orig429, served: true }],
      },
    });
    const known = ok(`CRIU_KNOWN_SHA256[4.3]=${sha256(orig43)}\ncriu_source`, { work: path.join(root, 'work-known') });
    assert.equal(known.trim(), `4.3-1 criu_4.3.orig.tar.xz ${sha256(orig43)} known-sha256`);

    const r = criuBuild('criu_source', { work: path.join(root, 'work-unknown') });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), `4.2.9-1 criu_4.2.9.orig.tar.xz ${sha256(orig429)} dsc`);
    assert.match(r.stderr, /WARNING: 4\.3-1: the mirror serves no \.dsc for it and its tarball's sha256 is not among CRIU_KNOWN_SHA256/);

    const wrong = criuBuild(`CRIU_KNOWN_SHA256[4.3]=${'1'.repeat(64)}\nCRIU_KNOWN_SHA256[4.2.9]=x\nrm -f "$FAKE/served/criu_4.2.9-1.dsc"\ncriu_source`, { work: path.join(root, 'work-wrong') });
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /ERROR: no CRIU >= 4\.2 could be fetched and verified: 4\.3-1: no \.dsc served, and criu_4\.3\.orig\.tar\.xz has sha256 [0-9a-f]{64}, not the known 1{64};4\.2\.9-1: /);
    assert.ok(!fs.existsSync(path.join(root, 'work-wrong', 'src', 'source')), 'nothing cached');
  });

  it('refuses a tarball that differs from the index or from its .dsc', () => {
    const orig = origTarball('4.3');
    publish({
      listed: ['4.3-1'],
      files: { '4.3-1': [{ name: 'criu_4.3-1.dsc', data: dsc('criu_4.3.orig.tar.xz', origTarball('4.3.0')), served: true }, { name: 'criu_4.3.orig.tar.xz', data: orig, served: true }] },
    });
    const notDsc = criuBuild('criu_source', { work: path.join(root, 'work-mismatch') });
    assert.equal(notDsc.status, 1);
    assert.match(notDsc.stderr, /4\.3-1: criu_4\.3\.orig\.tar\.xz is not the tarball its \.dsc names/);

    fs.appendFileSync(path.join(fake, 'served', 'criu_4.3.orig.tar.xz'), 'tampered');
    const tampered = criuBuild('criu_source', { work: path.join(root, 'work-tampered') });
    assert.equal(tampered.status, 1);
    assert.match(tampered.stderr, /4\.3-1: criu_4\.3\.orig\.tar\.xz not fetched: E: Failed to fetch \S+ {2}Hash Sum mismatch/);
    assert.ok(!fs.existsSync(path.join(root, 'work-tampered', 'src')), 'nothing kept');
  });

  it('fails with a clear message when no CRIU >= 4.2 is served', () => {
    publish({ listed: ['4.1.1-1', '3.17.1-2'], files: {} });
    const r = criuBuild('criu_source', { work: path.join(root, 'work-none') });
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trim(),
      "criu-build: ERROR: Debian's source archive serves no CRIU >= 4.2 (suites forky sid trixie-backports; criu versions listed: 3.17.1-2 4.1.1-1). " +
      'tsvz needs >= 4.2: 4.1 cannot dump containers holding inet sockets on this kernel');
  });

  it('names the patch series by its contents and applies it, skipping a patch already upstream', () => {
    const patches = path.join(root, 'series');
    fs.mkdirSync(patches);
    const none = ok('criu_patch_set_id', { patches }).trim();
    assert.equal(none, 'none');
    const patch = '--- a/criu/page-pipe.c\n+++ b/criu/page-pipe.c\n@@ -1,2 +1,2 @@\n /* criu 4.3 */\n-int pipe_size = 1;\n+int pipe_size = 2;\n';
    fs.writeFileSync(path.join(patches, '0001-size.patch'), patch);
    const one = ok('criu_patch_set_id', { patches }).trim();
    assert.match(one, /^[0-9a-f]{16}$/);
    fs.writeFileSync(path.join(patches, '0001-size.patch'), patch.replace('= 2', '= 3'));
    assert.notEqual(ok('criu_patch_set_id', { patches }).trim(), one, 'a changed patch is another set');

    const tree = path.join(root, 'tree');
    fs.mkdirSync(path.join(tree, 'criu'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'criu', 'page-pipe.c'), '/* criu 4.3 */\nint pipe_size = 1;\n');
    ok(`criu_apply_patches ${JSON.stringify(tree)} 4.3-1`, { patches });
    assert.equal(fs.readFileSync(path.join(tree, 'criu', 'page-pipe.c'), 'utf8'), '/* criu 4.3 */\nint pipe_size = 3;\n');
    assert.equal(fs.readFileSync(path.join(tree, '.tsvz-patches'), 'utf8'), '0001-size.patch applied\n');

    const upstream = criuBuild(`criu_apply_patches ${JSON.stringify(tree)} 4.4-1`, { patches });
    assert.equal(upstream.status, 0, upstream.stderr);
    assert.match(upstream.stdout, /patches\/criu\/0001-size\.patch is already in criu 4\.4-1: skipped/);
    assert.equal(fs.readFileSync(path.join(tree, '.tsvz-patches'), 'utf8'), '0001-size.patch upstream\n');

    fs.writeFileSync(path.join(tree, 'criu', 'page-pipe.c'), '/* criu 5.0 */\nlong pipe_size;\n');
    const conflict = criuBuild(`criu_apply_patches ${JSON.stringify(tree)} 5.0-1`, { patches });
    assert.equal(conflict.status, 1);
    assert.match(conflict.stderr, /ERROR: patches\/criu\/0001-size\.patch does not apply to criu 5\.0-1: refresh the patch for it/);
  });

  it('rebuilds when the installed CRIU is missing, too old, unrecorded, replaced, or lacks the current patches', () => {
    const bin = path.join(root, 'bin', 'criu');
    fs.mkdirSync(path.dirname(bin), { recursive: true });
    const marker = path.join(root, 'criu-build');
    const patches = path.join(root, 'patches');
    const state = (): string => ok('criu_installed_state', { patches }).trim();
    fs.rmSync(bin, { force: true });
    fs.rmSync(marker, { force: true });
    assert.match(state(), /criu is missing$/);
    fs.writeFileSync(bin, '#!/bin/sh\necho "Version: 4.1.1"\n', { mode: 0o755 });
    assert.match(state(), /criu is 4\.1\.1, older than 4\.2$/);
    fs.writeFileSync(bin, '#!/bin/sh\necho "Version: 4.2.1"\n', { mode: 0o755 });
    assert.match(state(), /\(4\.2\.1\) has no build record \(.*criu-build\): which patches it carries is unknown$/);
    const set = ok('criu_patch_set_id', { patches }).trim();
    fs.writeFileSync(marker, `debian-version=4.2.1-1\npatch-set=${set}\nbinary-sha256=${sha256(fs.readFileSync(bin))}\n`);
    assert.equal(state(), 'ok');
    fs.writeFileSync(path.join(patches, '0002-more.patch'), '--- a/x\n+++ b/x\n');
    assert.match(state(), new RegExp(`carries patch set ${set}, patches/criu/ is [0-9a-f]{16}$`));
    fs.rmSync(path.join(patches, '0002-more.patch'));
    fs.appendFileSync(bin, '# replaced\n');
    assert.match(state(), /is not the binary .*criu-build describes$/);
  });

  it("applies the repository's patches to the CRIU source set-up has cached", (t) => {
    const src = '/var/cache/tsvz/criu-build/src';
    const tarball = fs.existsSync(src) ? fs.readdirSync(src).find((f) => /^criu_.*\.orig\.tar\./.test(f)) : undefined;
    if (!tarball) return t.skip(`no CRIU source in ${src} (scripts/setup-host fetches it)`);
    const patches = path.join(REPO, 'patches', 'criu');
    const series = fs.readdirSync(patches).filter((f) => f.endsWith('.patch')).sort();
    // Only the files the patches touch: the whole tree takes seconds to unpack.
    const touched = [...new Set(series.flatMap((f) => [...fs.readFileSync(path.join(patches, f), 'utf8').matchAll(/^\+\+\+ b\/(\S+)/gm)].map((m) => m[1])))];
    const tree = fs.mkdtempSync(path.join(root, 'real-'));
    const untar = spawnSync('tar', ['-C', tree, '--strip-components=1', '--wildcards', '-xf', path.join(src, tarball), ...touched.map((f) => `*/${f}`)], { encoding: 'utf8' });
    assert.equal(untar.status, 0, untar.stderr);
    ok(`criu_apply_patches ${JSON.stringify(tree)} ${JSON.stringify(tarball)}`, { patches });
    const applied = fs.readFileSync(path.join(tree, '.tsvz-patches'), 'utf8').trim().split('\n');
    assert.deepEqual(applied, series.map((f) => `${f} applied`));
  });
});
