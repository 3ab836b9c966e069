// Helpers of the FAKE `container` CLI (tests/fakes/README.md): the errors
// only Apple's CLI prints (the fake's own refusals, ContainerizationError's
// description, Swift's string and list descriptions), and the fakes'
// common helpers (tests/fakes/common), which this fake uses unqualified.
#ifndef CORRAL_TESTS_FAKES_APPLE_FAKE_UTIL_H_
#define CORRAL_TESTS_FAKES_APPLE_FAKE_UTIL_H_

#include <string>
#include <vector>

#include "tests/fakes/common/fake_args.h"
#include "tests/fakes/common/fake_util.h"
#include "tests/fakes/common/swift_json.h"

namespace corral::fake_apple {

using fakes::AbsolutePath;
using fakes::ArgumentSpec;
using fakes::Basename;
using fakes::CliExit;
using fakes::CloseFrom;
using fakes::CommandSpec;
using fakes::Dirname;
using fakes::Fail;
using fakes::FileLock;
using fakes::HostArchitecture;
using fakes::IsDirectory;
using fakes::Iso8601;
using fakes::JoinPath;
using fakes::LexicallyNormal;
using fakes::MakeDirs;
using fakes::NewUuid;
using fakes::NowIso8601;
using fakes::OpenInRoot;
using fakes::OptionSpec;
using fakes::Parse;
using fakes::Parsed;
using fakes::ParseRfc3339;
using fakes::PathExists;
using fakes::PidfdOpen;
using fakes::ProcessAlive;
using fakes::ProcessStartTime;
using fakes::ReadFile;
using fakes::RemoveAt;
using fakes::RemoveTree;
using fakes::RunCapture;
using fakes::RunCommand;
using fakes::Sha256Hex;
using fakes::Sha256OfFd;
using fakes::SwiftCompact;
using fakes::SwiftPretty;
using fakes::SwiftSplit;
using fakes::Usage;
using fakes::UsageError;
using fakes::ValueType;
using fakes::WaitPidfd;
using fakes::WriteFileAtomic;

// An error of the fake's own, which the real CLI does not have: "Error:
// fake container: <message>", exit 1. (Fail() prints a
// ContainerizationError's errorDescription, or any other runtime error.)
[[noreturn]] void FailFake(const std::string& message);

// ContainerizationError's description: `code: "message"`, with
// ` (cause: "<cause>")` when there is a cause.
std::string Described(const std::string& code, const std::string& message,
                      const std::string& cause = "");
// Swift's String description inside a collection: quoted and escaped.
std::string SwiftQuoted(const std::string& text);
// Swift's [String] description: ["a", "b"].
std::string SwiftList(const std::vector<std::string>& items);

}  // namespace corral::fake_apple

#endif  // CORRAL_TESTS_FAKES_APPLE_FAKE_UTIL_H_
