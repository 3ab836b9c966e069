#include "daemon/net/netlink.h"

#include <arpa/inet.h>
#include <net/if.h>
// after net/if.h, which it would otherwise redefine
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <time.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"

namespace corral::net {
namespace {

struct SocketCloser {
  void operator()(mnl_socket* socket) const { mnl_socket_close(socket); }
};

// Sends one request built in `buffer` and waits for its acknowledgement.
absl::Status Transact(nlmsghdr* request, absl::string_view what) {
  std::unique_ptr<mnl_socket, SocketCloser> socket(
      mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC));
  if (!socket) return ErrnoStatus("netlink socket");
  if (mnl_socket_bind(socket.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    return ErrnoStatus("bind netlink socket");
  }
  request->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  request->nlmsg_seq = static_cast<uint32_t>(::time(nullptr));
  if (mnl_socket_sendto(socket.get(), request, request->nlmsg_len) < 0) {
    return ErrnoStatus(absl::StrCat("netlink ", what));
  }
  std::vector<char> answer(MNL_SOCKET_BUFFER_SIZE);
  const ssize_t n =
      mnl_socket_recvfrom(socket.get(), answer.data(), answer.size());
  if (n < 0) return ErrnoStatus(absl::StrCat("netlink ", what));
  if (mnl_cb_run(answer.data(), static_cast<size_t>(n), request->nlmsg_seq,
                 mnl_socket_get_portid(socket.get()), nullptr, nullptr) < 0) {
    return ErrnoStatus(absl::StrCat("netlink ", what));
  }
  return absl::OkStatus();
}

// A request of `type` about one link (index 0: a new one) in `buffer`;
// its ifinfomsg in *info.
nlmsghdr* LinkRequest(std::vector<char>& buffer, uint16_t type, int index,
                      uint16_t flags, ifinfomsg** info = nullptr) {
  nlmsghdr* header = mnl_nlmsg_put_header(buffer.data());
  header->nlmsg_type = type;
  header->nlmsg_flags = flags;
  auto* link = static_cast<ifinfomsg*>(
      mnl_nlmsg_put_extra_header(header, sizeof(ifinfomsg)));
  link->ifi_family = AF_UNSPEC;
  link->ifi_index = index;
  if (info != nullptr) *info = link;
  return header;
}

absl::StatusOr<int> IndexOf(const std::string& ifname) {
  const unsigned index = ::if_nametoindex(ifname.c_str());
  if (index == 0) return ErrnoStatus(absl::StrCat("find link ", ifname));
  return static_cast<int>(index);
}

}  // namespace

absl::Status CreateVethPair(const std::string& name, int netns_fd,
                            const std::string& peer_name, int peer_netns_fd) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* header =
      LinkRequest(buffer, RTM_NEWLINK, 0, NLM_F_CREATE | NLM_F_EXCL);
  mnl_attr_put_strz(header, IFLA_IFNAME, name.c_str());
  mnl_attr_put_u32(header, IFLA_NET_NS_FD, static_cast<uint32_t>(netns_fd));
  nlattr* linkinfo = mnl_attr_nest_start(header, IFLA_LINKINFO);
  mnl_attr_put_strz(header, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(header, IFLA_INFO_DATA);
  nlattr* peer = mnl_attr_nest_start(header, VETH_INFO_PEER);
  // The peer's attributes follow an ifinfomsg of their own.
  header->nlmsg_len += MNL_ALIGN(sizeof(ifinfomsg));
  mnl_attr_put_strz(header, IFLA_IFNAME, peer_name.c_str());
  mnl_attr_put_u32(header, IFLA_NET_NS_FD,
                   static_cast<uint32_t>(peer_netns_fd));
  mnl_attr_nest_end(header, peer);
  mnl_attr_nest_end(header, data);
  mnl_attr_nest_end(header, linkinfo);
  return Transact(header, absl::StrCat("create veth ", name, "/", peer_name));
}

absl::Status LinkUp(const std::string& ifname) {
  ASSIGN_OR_RETURN(const int index, IndexOf(ifname));
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  ifinfomsg* info = nullptr;
  nlmsghdr* header = LinkRequest(buffer, RTM_NEWLINK, index, 0, &info);
  info->ifi_flags = IFF_UP;
  info->ifi_change = IFF_UP;
  return Transact(header, absl::StrCat("set ", ifname, " up"));
}

absl::Status AddAddressAndUp(const std::string& ifname, uint32_t address,
                             int prefix) {
  ASSIGN_OR_RETURN(const int index, IndexOf(ifname));
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* header = mnl_nlmsg_put_header(buffer.data());
  header->nlmsg_type = RTM_NEWADDR;
  header->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
  auto* info = static_cast<ifaddrmsg*>(
      mnl_nlmsg_put_extra_header(header, sizeof(ifaddrmsg)));
  info->ifa_family = AF_INET;
  info->ifa_prefixlen = static_cast<unsigned char>(prefix);
  info->ifa_scope = RT_SCOPE_UNIVERSE;
  info->ifa_index = static_cast<unsigned>(index);
  const uint32_t network_order = htonl(address);
  mnl_attr_put_u32(header, IFA_LOCAL, network_order);
  mnl_attr_put_u32(header, IFA_ADDRESS, network_order);
  RETURN_IF_ERROR(Transact(header, absl::StrCat("address on ", ifname)));
  return LinkUp(ifname);
}

absl::Status AddDefaultRoute(uint32_t gateway) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* header = mnl_nlmsg_put_header(buffer.data());
  header->nlmsg_type = RTM_NEWROUTE;
  header->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
  auto* route =
      static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(header, sizeof(rtmsg)));
  route->rtm_family = AF_INET;
  route->rtm_dst_len = 0;
  route->rtm_table = RT_TABLE_MAIN;
  route->rtm_protocol = RTPROT_STATIC;
  route->rtm_scope = RT_SCOPE_UNIVERSE;
  route->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32(header, RTA_GATEWAY, htonl(gateway));
  return Transact(header, "default route");
}

absl::Status DeleteLink(const std::string& ifname) {
  const unsigned index = ::if_nametoindex(ifname.c_str());
  if (index == 0) return absl::OkStatus();
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* header =
      LinkRequest(buffer, RTM_DELLINK, static_cast<int>(index), 0);
  absl::Status status = Transact(header, absl::StrCat("delete ", ifname));
  if (!status.ok() && ::if_nametoindex(ifname.c_str()) == 0) {
    return absl::OkStatus();  // gone meanwhile (its other end's netns ended)
  }
  return status;
}

}  // namespace corral::net
