namespace UsageBilling.StripeEmulator.State;

/// <summary>
/// Every meter event Stripe accepted, from v1 and from the v2 stream alike: in arrival order, by identifier (for
/// dedup and cancels) and by meter·customer (for aggregation). Not thread-safe: callers hold the backend's lock.
/// </summary>
internal sealed class MeterEventLog
{
    private readonly List<MeterEventRecord> _all = [];
    private readonly Dictionary<string, MeterEventRecord> _byIdentifier = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Meter, string Customer), List<MeterEventRecord>> _byKey = [];

    /// <summary>The last sequence number given out (orders events within one second).</summary>
    public long Sequence { get; private set; }

    /// <summary>Every event in arrival order.</summary>
    public IReadOnlyList<MeterEventRecord> All => _all;

    public long NextSequence() => ++Sequence;

    /// <summary>The event last received with this identifier, if any.</summary>
    public MeterEventRecord? Find(string identifier) => _byIdentifier.GetValueOrDefault(identifier);

    /// <summary>Whether an event with this identifier arrived after <paramref name="since"/> (Unix seconds): a duplicate.</summary>
    public bool SeenSince(string identifier, long since) => Find(identifier) is { } existing && existing.Received > since;

    /// <summary>The events of one meter and customer, in arrival order (empty when none).</summary>
    public IReadOnlyList<MeterEventRecord> For(string meterId, string customer) =>
        _byKey.TryGetValue((meterId, customer), out var events) ? events : [];

    public void Add(MeterEventRecord record)
    {
        _all.Add(record);
        _byIdentifier[record.Identifier] = record;
        if (record.MeterId is not null && record.CustomerId is not null)
        {
            var key = (record.MeterId, record.CustomerId);
            if (!_byKey.TryGetValue(key, out var list))
            {
                _byKey[key] = list = [];
            }

            list.Add(record);
        }
    }

    /// <summary>Replaces the content with a state file's events and sequence.</summary>
    public void Load(IEnumerable<MeterEventRecord> records, long sequence)
    {
        Clear();
        foreach (var record in records)
        {
            Add(record);
        }

        Sequence = sequence;
    }

    public void Clear()
    {
        _all.Clear();
        _byIdentifier.Clear();
        _byKey.Clear();
        Sequence = 0;
    }
}
