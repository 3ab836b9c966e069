// The judges' report: "ok - WHAT" or "not ok - WHAT" (and what was got) per
// check, then "# all passed" or "# N failed" and the exit status, which the
// C++ tests that run them look for.
let failures = 0;

export function check(condition, what, detail) {
  console.log(`${condition ? "ok" : "not ok"} - ${what}`);
  if (condition) return;
  failures++;
  if (detail !== undefined) {
    const shown = detail instanceof Error ? `${detail.name}: ${detail.message}` : JSON.stringify(detail);
    console.log(`  got: ${String(shown).slice(0, 2000)}`);
  }
}

// An error outside any check.
export function unexpected(error) {
  failures++;
  console.log(`not ok - unexpected ${error?.name}: ${error?.message}\n${error?.stack}`);
}

export function finish() {
  console.log(failures === 0 ? "# all passed" : `# ${failures} failed`);
  process.exit(failures === 0 ? 0 : 1);
}
