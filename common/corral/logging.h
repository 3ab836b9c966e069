// Category loggers over spdlog: Logger("store") returns the process-wide
// logger of that category, creating it on first use with the default sink.
#ifndef CORRAL_COMMON_LOGGING_H_
#define CORRAL_COMMON_LOGGING_H_

#include <memory>
#include <mutex>
#include <string>

#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace corral {

inline std::shared_ptr<spdlog::logger> Logger(const std::string& category) {
  if (auto existing = spdlog::get(category)) return existing;
  // Two threads may ask for a new category at once; spdlog throws when a
  // name is registered twice, so creation is serialized.
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  if (auto existing = spdlog::get(category)) return existing;
  auto logger = spdlog::stderr_color_mt(category);
  logger->set_level(spdlog::get_level());
  return logger;
}

}  // namespace corral

#endif  // CORRAL_COMMON_LOGGING_H_
