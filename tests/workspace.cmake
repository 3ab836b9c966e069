# Tests of the workspace library (daemon/workspace): content store, upload
# validation, manifests, tar export and diffs. The [.bench] case is hidden;
# run it with: build/tests/workspace_test "[.bench]"
corral_test(NAME workspace_test
  SOURCES
    unit/workspace_store_test.cc
    unit/workspace_archive_in_test.cc
    unit/workspace_archive_out_test.cc
    unit/workspace_manifest_test.cc
    unit/workspace_diff_test.cc
    unit/workspace_patch_test.cc
  LIBS corral::workspace LibArchive::LibArchive
  LABELS unit workspace)
