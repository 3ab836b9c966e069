// The corral.v1.Guarantee numbers (proto/corral/v1/system.proto) as the
// plugins claim them in their ProbeResponse and CreateResponse: plugins see
// only the backend protocol's lite build, which does not carry the public
// API's enum.
#ifndef CORRAL_BACKENDS_COMMON_GUARANTEES_H_
#define CORRAL_BACKENDS_COMMON_GUARANTEES_H_

namespace corral::backend_plugin {

inline constexpr int kGuaranteeSeparateKernel = 1;
inline constexpr int kGuaranteeCgroupLimits = 2;
inline constexpr int kGuaranteeSeccomp = 3;
inline constexpr int kGuaranteeNetworkIsolation = 4;
inline constexpr int kGuaranteeEgressPolicy = 5;
inline constexpr int kGuaranteeUserNamespace = 6;
inline constexpr int kGuaranteeMemorySnapshot = 7;
inline constexpr int kGuaranteePause = 8;
inline constexpr int kGuaranteeDiskLimit = 9;

}  // namespace corral::backend_plugin

#endif  // CORRAL_BACKENDS_COMMON_GUARANTEES_H_
