%% @doc The NIF stubs behind `kinesis_producer'; use that module, not this one.
%%
%% The library is `kinesis_producer_nif.so', looked up (first match wins) at the path in the
%% environment variable `KINESIS_PRODUCER_NIF' (without `.so'), in `priv/' of the
%% `kinesis_producer' application, or in `../priv/' beside this module's `.beam'.
-module(kinesis_producer_nif).

-export([start/2, put/6, flush/2, stop/2, set_owner/1, owner/1, info/1]).

-on_load(load/0).

load() ->
    erlang:load_nif(library(), 0).

library() ->
    case os:getenv("KINESIS_PRODUCER_NIF") of
        Path when is_list(Path), Path =/= "" ->
            Path;
        _ ->
            Dir = case code:priv_dir(kinesis_producer) of
                      {error, bad_name} ->
                          filename:join([filename:dirname(code:which(?MODULE)), "..", "priv"]);
                      PrivDir ->
                          PrivDir
                  end,
            filename:join(Dir, "kinesis_producer_nif")
    end.

start(_Pairs, _Ref) -> erlang:nif_error(nif_not_loaded).
put(_Producer, _Ref, _PartitionKey, _ExplicitHashKey, _Data, _Wait) -> erlang:nif_error(nif_not_loaded).
flush(_Producer, _Ref) -> erlang:nif_error(nif_not_loaded).
stop(_Producer, _Ref) -> erlang:nif_error(nif_not_loaded).
set_owner(_Producer) -> erlang:nif_error(nif_not_loaded).
owner(_Producer) -> erlang:nif_error(nif_not_loaded).
info(_Producer) -> erlang:nif_error(nif_not_loaded).
