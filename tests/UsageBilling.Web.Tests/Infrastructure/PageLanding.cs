using System.Text.RegularExpressions;
using Microsoft.Playwright;

namespace UsageBilling.Web.Tests.Infrastructure;

/// <summary>Waiting for a form's post to land on a page.</summary>
internal static class PageLanding
{
    /// <summary>
    /// Waits until the page's URL ends with <paramref name="path"/> and its document is parsed; on a timeout, says where
    /// the page is and what it shows. It polls the URL and <c>document.readyState</c> rather than waiting for a
    /// navigation's load event: a CI run once saw <c>WaitForURLAsync(…, DOMContentLoaded)</c> time out after 60 s on
    /// /usage with the page fully shown and its load and network-idle events logged.
    /// </summary>
    /// <param name="page">The page that just submitted a form.</param>
    /// <param name="path">Where the post should land (e.g. <c>/usage</c>).</param>
    /// <param name="what">What the form did, for the message (e.g. "Signing in").</param>
    public static async Task WaitAsync(IPage page, string path, string what)
    {
        try
        {
            await Assertions.Expect(page).ToHaveURLAsync(new Regex(Regex.Escape(path) + "$"), new() { Timeout = 60_000 });
            await page.WaitForFunctionAsync("() => document.readyState !== 'loading'", null, new() { Timeout = 60_000 });
        }
        catch (Exception ex) when (ex is TimeoutException or PlaywrightException)
        {
            throw new TimeoutException($"{what} did not land on {path}: the page is {page.Url}, saying: {await page.Locator("body").InnerTextAsync()}", ex);
        }
    }
}
