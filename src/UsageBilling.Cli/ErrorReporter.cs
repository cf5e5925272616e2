using System.Data.Common;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Stripe;

namespace UsageBilling.Cli;

/// <summary>Turns any failure into one readable line on stderr and an exit code; the stack trace only with <c>--verbose</c>.</summary>
internal static class ErrorReporter
{
    public static int Report(Exception exception, bool verbose, string? stripeApiBase)
    {
        var (line, code) = Describe(exception, stripeApiBase);
        Console.Error.WriteLine(OneLine(line));
        if (verbose)
        {
            Console.Error.WriteLine(exception.ToString());
        }

        return code;
    }

    internal static (string Line, int ExitCode) Describe(Exception exception, string? stripeApiBase)
    {
        var chain = Chain(exception).ToList();
        if (chain.OfType<CliException>().FirstOrDefault() is { } cli)
        {
            return ($"error: {cli.Message}", cli.ExitCode);
        }

        if (chain.OfType<UsageBillingException>().FirstOrDefault() is { } refused)
        {
            return ($"error: {refused.Message}", ExitCodes.BadInput);
        }

        if (chain.OfType<OptionsValidationException>().FirstOrDefault() is { } options)
        {
            return ($"configuration error: {string.Join(" ", options.Failures)}", ExitCodes.BadInput);
        }

        if (chain.OfType<StripeException>().FirstOrDefault() is { } stripe && stripe.HttpStatusCode != 0)
        {
            var message = stripe.StripeError?.Message ?? stripe.Message;
            var code = (int)stripe.HttpStatusCode is 401 or 403 ? ExitCodes.BadInput : ExitCodes.Unavailable;
            return ($"Stripe refused the request ({(int)stripe.HttpStatusCode}): {message}", code);
        }

        if (chain.OfType<HttpRequestException>().FirstOrDefault() is { } http)
        {
            return ($"cannot reach Stripe at {stripeApiBase ?? "https://api.stripe.com"}: {http.Message}", ExitCodes.Unavailable);
        }

        if (chain.OfType<DbException>().FirstOrDefault() is { } db)
        {
            if (db.Message.Contains("no such table", StringComparison.Ordinal) || db.SqlState == "42P01")
            {
                return ($"the database has no UsageBilling tables: run 'usagebilling db migrate' first ({db.Message})", ExitCodes.BadInput);
            }

            var socket = chain.OfType<SocketException>().FirstOrDefault();
            return socket is not null
                ? ($"cannot reach the database: {db.Message} ({socket.Message})", ExitCodes.Unavailable)
                : ($"database error: {db.Message}", ExitCodes.Unavailable);
        }

        if (chain.OfType<TimeoutException>().FirstOrDefault() is { } timeout)
        {
            return ($"timed out: {timeout.Message}", ExitCodes.Unavailable);
        }

        if (exception is ArgumentException or FormatException or InvalidDataException)
        {
            return ($"error: {exception.Message}", ExitCodes.BadInput);
        }

        return ($"error: {exception.GetType().Name}: {exception.Message}", ExitCodes.Unavailable);
    }

    private static IEnumerable<Exception> Chain(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            yield return e;
            if (e is AggregateException aggregate && aggregate.InnerExceptions.Count > 0)
            {
                foreach (var inner in aggregate.InnerExceptions.SelectMany(Chain))
                {
                    yield return inner;
                }
            }
        }
    }

    private static string OneLine(string text) =>
        string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
