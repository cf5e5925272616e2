using System.Collections;
using System.Diagnostics.CodeAnalysis;

namespace UsageBilling.StripeEmulator.State;

/// <summary>
/// One resource's rows, by id and in creation order (Stripe's lists are newest first over that order). Not
/// thread-safe: callers hold the backend's lock.
/// </summary>
/// <typeparam name="T">The row type.</typeparam>
internal sealed class Table<T> : IReadOnlyList<T>
    where T : class
{
    private readonly Dictionary<string, T> _byId = new(StringComparer.Ordinal);
    private readonly List<T> _rows = [];
    private readonly Func<T, string> _id;

    public Table(Func<T, string> id) => _id = id;

    public int Count => _rows.Count;

    public T this[int index] => _rows[index];

    /// <summary>The row with this id; throws <see cref="KeyNotFoundException"/> when there is none.</summary>
    public T this[string id] => _byId[id];

    /// <summary>Adds a new row (its id must be new).</summary>
    public void Add(T row)
    {
        _byId.Add(_id(row), row);
        _rows.Add(row);
    }

    /// <summary>Adds rows read back from a state file, in their saved (creation) order.</summary>
    public void Load(IEnumerable<T> rows)
    {
        foreach (var row in rows)
        {
            Add(row);
        }
    }

    public bool TryGetValue(string id, [MaybeNullWhen(false)] out T row) => _byId.TryGetValue(id, out row);

    public T? GetValueOrDefault(string id) => _byId.GetValueOrDefault(id);

    public bool ContainsKey(string id) => _byId.ContainsKey(id);

    public bool Remove(string id, [MaybeNullWhen(false)] out T row)
    {
        if (!_byId.Remove(id, out row))
        {
            return false;
        }

        _rows.Remove(row);
        return true;
    }

    public void Clear()
    {
        _byId.Clear();
        _rows.Clear();
    }

    public IEnumerator<T> GetEnumerator() => _rows.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
