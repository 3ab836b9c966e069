#include "daemon/net/dns_message.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "corral/platform.h"
#include "daemon/net/egress_policy.h"

namespace corral::net {
namespace {

struct PacketFree {
  void operator()(ldns_pkt* packet) const { ldns_pkt_free(packet); }
};
using Packet = std::unique_ptr<ldns_pkt, PacketFree>;

Packet Parse(absl::string_view wire) {
  ldns_pkt* packet = nullptr;
  if (ldns_wire2pkt(&packet, reinterpret_cast<const uint8_t*>(wire.data()),
                    wire.size()) != LDNS_STATUS_OK) {
    return nullptr;
  }
  return Packet(packet);
}

std::optional<std::string> OwnerName(const ldns_rr* rr) {
  char* text = ldns_rdf2str(ldns_rr_owner(rr));
  if (text == nullptr) return std::nullopt;
  std::string owned(text);
  std::free(text);
  return NormalizeName(owned);
}

}  // namespace

std::optional<DnsQuestion> ParseDnsQuery(absl::string_view wire) {
  Packet query = Parse(wire);
  if (!query || ldns_pkt_qr(query.get()) ||
      ldns_pkt_get_opcode(query.get()) != LDNS_PACKET_QUERY) {
    return std::nullopt;
  }
  const ldns_rr_list* questions = ldns_pkt_question(query.get());
  if (questions == nullptr || ldns_rr_list_rr_count(questions) != 1) {
    return std::nullopt;
  }
  const ldns_rr* rr = ldns_rr_list_rr(questions, 0);
  auto name = OwnerName(rr);
  if (!name) return std::nullopt;
  DnsQuestion question;
  question.id = ldns_pkt_id(query.get());
  question.name = *name;
  question.type = static_cast<uint16_t>(ldns_rr_get_type(rr));
  char* type_name = ldns_rr_type2str(ldns_rr_get_type(rr));
  question.type_name = type_name != nullptr ? type_name : "?";
  std::free(type_name);
  return question;
}

std::string DnsQuery(const std::string& name, uint16_t type,
                     DnsQuestion* question) {
  uint16_t id = 0;
  (void)!corral::platform::FillRandom(&id, sizeof(id));
  ldns_pkt* made = nullptr;
  if (ldns_pkt_query_new_frm_str(&made, absl::StrCat(name, ".").c_str(),
                                 static_cast<ldns_rr_type>(type),
                                 LDNS_RR_CLASS_IN, LDNS_RD) != LDNS_STATUS_OK) {
    return {};
  }
  Packet query(made);
  ldns_pkt_set_id(query.get(), id);
  uint8_t* wire = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&wire, query.get(), &size) != LDNS_STATUS_OK) return {};
  std::string bytes(reinterpret_cast<char*>(wire), size);
  std::free(wire);
  question->id = id;
  question->name = name;
  question->type = type;
  question->type_name = type == kDnsTypeA ? "A" : "?";
  return bytes;
}

std::string EmptyDnsAnswer(const DnsQuestion& question, int rcode) {
  Packet answer(ldns_pkt_new());
  ldns_pkt_set_id(answer.get(), question.id);
  ldns_pkt_set_qr(answer.get(), true);
  ldns_pkt_set_rd(answer.get(), true);
  ldns_pkt_set_ra(answer.get(), true);
  ldns_pkt_set_opcode(answer.get(), LDNS_PACKET_QUERY);
  ldns_pkt_set_rcode(answer.get(), static_cast<uint8_t>(rcode));
  ldns_rdf* owner = nullptr;
  if (ldns_str2rdf_dname(&owner, absl::StrCat(question.name, ".").c_str()) ==
      LDNS_STATUS_OK) {
    ldns_rr* rr = ldns_rr_new();
    ldns_rr_set_owner(rr, owner);
    ldns_rr_set_type(rr, static_cast<ldns_rr_type>(question.type));
    ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
    ldns_rr_set_question(rr, true);
    ldns_pkt_push_rr(answer.get(), LDNS_SECTION_QUESTION, rr);
  }
  uint8_t* wire = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&wire, answer.get(), &size) != LDNS_STATUS_OK) return {};
  std::string bytes(reinterpret_cast<char*>(wire), size);
  std::free(wire);
  return bytes;
}

std::optional<DnsAnswer> ParseDnsAnswer(absl::string_view wire,
                                        const DnsQuestion& question) {
  Packet packet = Parse(wire);
  if (!packet || !ldns_pkt_qr(packet.get()) ||
      ldns_pkt_id(packet.get()) != question.id) {
    return std::nullopt;
  }
  const ldns_rr_list* questions = ldns_pkt_question(packet.get());
  if (questions == nullptr || ldns_rr_list_rr_count(questions) != 1) {
    return std::nullopt;
  }
  const ldns_rr* asked = ldns_rr_list_rr(questions, 0);
  if (OwnerName(asked) != question.name ||
      ldns_rr_get_type(asked) != question.type) {
    return std::nullopt;
  }
  DnsAnswer answer;
  answer.rcode = ldns_pkt_get_rcode(packet.get());
  const ldns_rr_list* records = ldns_pkt_answer(packet.get());
  const size_t count = records ? ldns_rr_list_rr_count(records) : 0;
  for (size_t i = 0; i < count; ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(records, i);
    if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_A || ldns_rr_rd_count(rr) != 1) {
      continue;
    }
    const ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
    if (ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_A || ldns_rdf_size(rdf) != 4) {
      continue;
    }
    uint32_t network_order = 0;
    std::memcpy(&network_order, ldns_rdf_data(rdf), 4);
    answer.addresses.push_back({ntohl(network_order), ldns_rr_ttl(rr)});
  }
  return answer;
}

}  // namespace corral::net
