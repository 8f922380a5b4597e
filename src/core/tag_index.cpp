// Instantiates the subscription trie for the core's two indexes (tag_index_impl.hpp holds
// the members' definitions).
#include "core/tag_index_impl.hpp"

#include "core/subscription_index.hpp"

namespace wsagent::core {

template class basic_tag_index<session>;
template class basic_tag_index<shared_group>;

}  // namespace wsagent::core
