%% @doc A Kinesis producer in the manner of the KPL, backed by the Rust `kinesis-producer'
%% (a NIF): shard-aware KPL aggregation, `PutRecords' collection, per-record retries,
%% rate limiting and bounded memory.
%%
%% ```
%% {ok, P} = kinesis_producer:start_link(#{stream_name => <<"orders">>,
%%                                         region => <<"us-east-1">>,
%%                                         'RecordMaxBufferedTime' => 50}),
%% {ok, Ref} = kinesis_producer:put(P, <<"customer-42">>, <<"{\"total\": 12}">>),
%% receive
%%     {kinesis_put, Ref, {ok, ShardId, SequenceNumber, SubSequenceNumber}} -> ok;
%%     {kinesis_put, Ref, {error, Reason}} -> {error, Reason}
%% end,
%% ok = kinesis_producer:stop(P).
%% '''
%%
%% `start_link/1' starts a small gen_server, linked to the caller, that owns the producer:
%% when it stops (its parent exits, a supervisor shuts it down, `stop/1'), the producer is
%% flushed and shut down; the NIF also monitors it, so even a `kill' stops the producer.
%% Puts do not go through that process: `put/3' calls the NIF directly and the outcome is sent
%% to the process that called `put'.
-module(kinesis_producer).
-behaviour(gen_server).

-export([start_link/1, put/3, put/4, try_put/3, try_put/4, flush/1, stop/1, owner/1, info/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-export_type([producer/0, config/0, put_result/0, reason/0]).

-type producer() :: reference().
%% The NIF resource: any process may put with it. (A resource term prints as a reference.)
-type config() :: #{atom() | binary() | string() => term()} | [{atom() | binary() | string(), term()}].
%% `stream_name' (required), `region', `endpoint_url', and KPL options by their KPL names
%% (`RecordTtl', `AggregationMaxSize', ...; durations in milliseconds), as atoms, binaries
%% or strings; values as binaries, strings, integers or booleans.
-type put_result() :: {ok, ShardId :: binary(), SequenceNumber :: binary(),
                       SubSequenceNumber :: non_neg_integer() | undefined}
                    | {error, reason()}.
%% `SubSequenceNumber': the record's index in the KPL aggregate that carried it, as a consumer
%% sees it after deaggregation; `undefined' when the record was sent on its own.
-type attempt() :: #{delay_ms := non_neg_integer(), duration_ms := non_neg_integer(),
                     result := ok | {error, Code :: binary(), Message :: binary()}}.
-type reason() :: {expired, [attempt()]}        % not put within RecordTtl
                | {throttled, [attempt()]}      % throttled while FailIfThrottled is set
                | {rejected, Code :: binary(), Message :: binary()} % retrying cannot help
                | {aborted, Message :: binary()}
                | closed                        % stopped while put/3 waited for room
                | {other, Message :: binary()}.

%% @doc Starts a producer for the stream: lists its shards, starts its pipeline, and starts the
%% owning process linked to the caller. Returns `{error, {config, Message}}' for a bad option,
%% `{error, {stream_not_found, Stream}}' when the stream does not exist.
-spec start_link(config()) -> {ok, producer()} | {error, term()}.
start_link(Config) ->
    case pairs(Config) of
        {ok, Pairs} ->
            Ref = make_ref(),
            ok = kinesis_producer_nif:start(Pairs, Ref),
            receive
                {kinesis_producer_started, Ref, {ok, Producer}} ->
                    {ok, _Owner} = gen_server:start_link(?MODULE, Producer, []),
                    {ok, Producer};
                {kinesis_producer_started, Ref, {error, _} = Error} ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc Puts a record. Returns `{ok, Ref}' once the producer took it; the outcome comes later
%% to the calling process as `{kinesis_put, Ref, put_result()}'. When the producer already
%% holds `MaxOutstandingRecords' or `MaxOutstandingBytes', waits (the calling process, not a
%% scheduler) until there is room. A bad partition key or data over 1 MiB is refused at once
%% with `{error, {invalid, Message}}'; a stopped producer with `{error, closed}'.
-spec put(producer(), unicode:chardata(), iodata()) -> {ok, reference()} | {error, term()}.
put(Producer, PartitionKey, Data) ->
    put(Producer, PartitionKey, undefined, Data).

%% @doc `put/3' with an explicit hash key (a decimal in 0..2^128-1, as integer, binary or
%% string) that picks the shard instead of the partition key's MD5; `undefined' for none.
-spec put(producer(), unicode:chardata(), undefined | integer() | unicode:chardata(), iodata()) ->
          {ok, reference()} | {error, term()}.
put(Producer, PartitionKey, ExplicitHashKey, Data) ->
    case keys(PartitionKey, ExplicitHashKey) of
        {ok, Key, HashKey} ->
            Ref = make_ref(),
            case kinesis_producer_nif:put(Producer, Ref, Key, HashKey, Data, true) of
                ok ->
                    {ok, Ref};
                wait ->
                    receive
                        {kinesis_put, Ref, accepted} -> {ok, Ref};
                        {kinesis_put, Ref, {error, Reason}} -> {error, Reason}
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc Like `put/3', but never waits: `{error, full}' when the producer has no room now.
-spec try_put(producer(), unicode:chardata(), iodata()) -> {ok, reference()} | {error, term()}.
try_put(Producer, PartitionKey, Data) ->
    try_put(Producer, PartitionKey, undefined, Data).

%% @doc `try_put/3' with an explicit hash key.
-spec try_put(producer(), unicode:chardata(), undefined | integer() | unicode:chardata(), iodata()) ->
          {ok, reference()} | {error, term()}.
try_put(Producer, PartitionKey, ExplicitHashKey, Data) ->
    case keys(PartitionKey, ExplicitHashKey) of
        {ok, Key, HashKey} ->
            Ref = make_ref(),
            case kinesis_producer_nif:put(Producer, Ref, Key, HashKey, Data, false) of
                ok -> {ok, Ref};
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc Sends everything buffered now and returns once every record put before the call is
%% resolved and its `{kinesis_put, ...}' message delivered. `{error, closed}' after `stop/1'.
-spec flush(producer()) -> ok | {error, closed}.
flush(Producer) ->
    Ref = make_ref(),
    ok = kinesis_producer_nif:flush(Producer, Ref),
    receive
        {kinesis_flushed, Ref, Result} -> Result
    end.

%% @doc Refuses new records, puts (or fails) every buffered one, delivers every outcome, then
%% stops the owning process. Idempotent; any process may call it.
-spec stop(producer()) -> ok.
stop(Producer) ->
    case kinesis_producer_nif:owner(Producer) of
        Owner when is_pid(Owner), Owner =/= self() ->
            try
                gen_server:call(Owner, stop, infinity)
            catch
                %% The owner is gone or went during the call: stop the producer from here.
                exit:_ ->
                    stop_now(Producer)
            end;
        _ ->
            stop_now(Producer)
    end.

%% @doc The process that owns the producer (link to it or monitor it), or `undefined'.
-spec owner(producer()) -> pid() | undefined.
owner(Producer) ->
    kinesis_producer_nif:owner(Producer).

%% @doc The stream and the number of records taken but not yet resolved.
-spec info(producer()) -> #{stream := binary(), outstanding_records := non_neg_integer()}.
info(Producer) ->
    kinesis_producer_nif:info(Producer).

%% --- the owning process

%% @private
init(Producer) ->
    process_flag(trap_exit, true),
    ok = kinesis_producer_nif:set_owner(Producer),
    {ok, Producer}.

%% @private
handle_call(stop, _From, Producer) ->
    ok = stop_now(Producer),
    {stop, normal, ok, Producer};
handle_call(_Request, _From, Producer) ->
    {reply, {error, unknown_call}, Producer}.

%% @private
handle_cast(_Request, Producer) ->
    {noreply, Producer}.

%% @private
%% An exit from the parent ends the gen_server (and so `terminate/2') by itself; other linked
%% processes' exits are not the producer's business.
handle_info(_Info, Producer) ->
    {noreply, Producer}.

%% @private
terminate(_Reason, Producer) ->
    stop_now(Producer).

%% --- helpers

stop_now(Producer) ->
    Ref = make_ref(),
    ok = kinesis_producer_nif:stop(Producer, Ref),
    receive
        {kinesis_stopped, Ref, ok} -> ok
    end.

keys(PartitionKey, ExplicitHashKey) ->
    case {text(PartitionKey), hash_key(ExplicitHashKey)} of
        {{ok, Key}, {ok, HashKey}} -> {ok, Key, HashKey};
        {{ok, _}, error} -> invalid(<<"explicit hash key must be a decimal integer, binary or string">>);
        {error, _} -> invalid(<<"partition key must be a binary or a string of Unicode characters">>)
    end.

invalid(Message) ->
    {error, {invalid, Message}}.

hash_key(undefined) -> {ok, undefined};
hash_key(Key) when is_integer(Key) -> {ok, integer_to_binary(Key)};
hash_key(Key) -> text(Key).

text(Text) when is_binary(Text) -> {ok, Text};
text(Text) when is_list(Text) ->
    case unicode:characters_to_binary(Text) of
        Binary when is_binary(Binary) -> {ok, Binary};
        _ -> error
    end;
text(_) -> error.

pairs(Config) when is_map(Config) ->
    pairs(maps:to_list(Config));
pairs(Config) when is_list(Config) ->
    pairs(Config, []);
pairs(_) ->
    {error, {config, <<"the configuration must be a map or a proplist">>}}.

pairs([], Acc) ->
    {ok, lists:reverse(Acc)};
pairs([Key | Rest], Acc) when is_atom(Key) ->
    pairs([{Key, true} | Rest], Acc);
pairs([{Key, Value} | Rest], Acc) ->
    case {option_text(Key), option_text(Value)} of
        {{ok, K}, {ok, V}} -> pairs(Rest, [{K, V} | Acc]);
        _ -> {error, {config, iolist_to_binary(io_lib:format("bad option ~tp", [{Key, Value}]))}}
    end;
pairs([Other | _], _Acc) ->
    {error, {config, iolist_to_binary(io_lib:format("bad option ~tp", [Other]))}}.

option_text(Value) when is_atom(Value) -> {ok, atom_to_binary(Value, utf8)};
option_text(Value) when is_integer(Value) -> {ok, integer_to_binary(Value)};
option_text(Value) -> text(Value).
