// The machinery behind the table of virtio device kinds (device_kinds.h): a list of kind types
// and what follows from it, the variants of every kind's Spec and State and the way from one of
// those back to its kind. It knows no kind itself.
//
// A kind type (e.g. BlockKind, beside its device) is a struct of static members:
//   kName   "virtio-blk": the kind's name in logs, errors and snapshot files
//   Spec    plain data: what a machine description says about one such device
//   State   plain data: what a snapshot keeps of one running (DESIGN.md rule 1)
//   create(const Spec&) -> std::shared_ptr<VirtioDevice>: builds the device and its back-end
// and, where the device depends on a host resource that a snapshot must find unchanged:
//   record_identity(const Spec&) -> Spec     at save: the spec with the resource's identity
//   check_identity(const Spec&)              at restore: throws Error if the resource changed
// Spec and State each have `void validate() const` (throws Error naming the field that is
// wrong) and `template <typename Self, typename F> static void fields(Self& self, F&& f)`, which
// calls f(name, member) for every field a snapshot stores, in order (snake_case names; the
// snapshot codec maps them onto the kind's schema by name). Field types: integers (bool
// included) and std::string.
#pragma once

#include <type_traits>
#include <variant>

namespace wisp {

namespace kind_list_detail {

// The first of Kinds whose Spec or State is T (void if none).
template <typename T, typename... Kinds>
struct Find {
  using type = void;
};
template <typename T, typename Kind, typename... Rest>
struct Find<T, Kind, Rest...> {
  using type = std::conditional_t<std::is_same_v<T, typename Kind::Spec> ||
                                      std::is_same_v<T, typename Kind::State>,
                                  Kind, typename Find<T, Rest...>::type>;
};

}  // namespace kind_list_detail

template <typename... Kinds>
struct KindList {
  // One alternative per kind, in list order.
  using Spec = std::variant<typename Kinds::Spec...>;
  using State = std::variant<typename Kinds::State...>;

  // The kind whose Spec or State is T.
  template <typename T>
  using KindOf = typename kind_list_detail::Find<std::remove_cvref_t<T>, Kinds...>::type;

  // Calls f.template operator()<Kind>() for each kind in list order until one returns true;
  // returns whether one did. For finding a kind by something other than its type (its name in
  // a file).
  template <typename F>
  static bool find(F&& f) {
    return (f.template operator()<Kinds>() || ...);
  }
};

}  // namespace wisp
